#[dsu::update_point]
pub struct Server;

fn main() {}
