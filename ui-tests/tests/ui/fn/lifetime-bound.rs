#[dsu::updateable]
fn pick<'a, 'b: 'a>(a: &'a str, b: &'b str) -> &'a str {
    if a.is_empty() { b } else { a }
}

fn main() {}
