//! Everything that reads a patch file before anything in it runs: the seal, and behind it the
//! ELF file, its dynamic symbols, the header, the manifest and every record, as `dsu::load`
//! reads them; and dsu-abi's decoders on raw bytes. Run with
//! `cargo +nightly fuzz run patch_reader fuzz/corpus/patch_reader -- -max_len=131072`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dsu::__private::check_seal(data, &[]);
    let _ = dsu::__private::read_patch_library(data);
    let _ = dsu_abi::decode_patch_blob(data);
    let _ = dsu_abi::seal::Seal::parse(data);
    let _ = dsu_abi::FnInfoView::parse(data);
    let _ = dsu_abi::CellInfoView::parse(data);
    let _ = dsu_abi::FieldCellInfoView::parse(data);
    let _ = dsu_abi::cell_transform_fingerprints(data);
});
