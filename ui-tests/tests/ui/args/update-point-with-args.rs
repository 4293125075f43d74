#[dsu::update_point(every = 10)]
fn handle() {}

fn main() {}
