#[dsu::updateable]
pub struct Entry {
    pub name: String,
    pub socket: std::net::TcpStream,
}

fn main() {}
