#[dsu::updateable]
fn first<'a>(v: &'a [u32]) -> Option<&'a u32>
where
    u32: Copy,
{
    v.first()
}

fn main() {}
