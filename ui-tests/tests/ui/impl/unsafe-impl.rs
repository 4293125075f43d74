/// # Safety
/// `ptr` points at `len` readable bytes.
pub unsafe trait RawBuf {
    fn ptr(&self) -> *const u8;
    fn len(&self) -> usize;
}

pub struct Buf(Vec<u8>);

#[dsu::updateable]
unsafe impl RawBuf for Buf {
    fn ptr(&self) -> *const u8 {
        self.0.as_ptr()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

fn main() {}
