//! Load for the kv example (`examples/kv`), and its measurements.
//!
//! - [`resp`] and [`client`]: a RESP2 client on tokio, pipelined.
//! - [`load`]: the load generator (closed-loop connections, values a function of the key, so
//!   every reply and, at the end, every key is checked), the fill and the verify phases.
//! - [`repo`]: the server's release history as a git repository (r1 and its overlays).
//! - [`server`]: the server as a child process (ready line, SIGTERM, peak memory).
//! - [`dsu`]: `cargo dsu` run by the bench or test executable itself, and the control socket.
//! - [`scenario`]: live updates and graceful restarts under the same load, and their figures.
//! - [`plot`]: the figure of both.

pub mod client;
pub mod dsu;
pub mod load;
pub mod plot;
pub mod repo;
pub mod resp;
pub mod scenario;
pub mod server;
