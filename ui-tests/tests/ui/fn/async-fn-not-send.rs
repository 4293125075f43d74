use std::rc::Rc;

async fn tick() {}

/// Holds an `Rc` across an `.await`: the future is not `Send`, which an updateable `async fn`
/// needs unless it says `#[dsu::updateable(?Send)]`.
#[dsu::updateable]
async fn count(n: u32) -> u32 {
    let shared = Rc::new(n);
    tick().await;
    *shared + 1
}

fn main() {}
