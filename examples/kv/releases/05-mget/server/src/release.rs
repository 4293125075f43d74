//! Which release of the server this code is, as `INFO` reports it (`kv_release:`).

/// The release tag of the running code.
#[dsu::updateable]
pub fn release() -> &'static str {
    "r5"
}
