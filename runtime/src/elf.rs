//! Reading a library's dynamic symbols and their bytes from the file, before (or without)
//! mapping it. Only data is read; nothing in the file is executed.

use object::{Object, ObjectKind, ObjectSection, ObjectSymbol};

/// Why a file could not be read as a library.
pub(crate) enum ElfError {
    NotALibrary(String),
    Malformed(String),
}

/// A dynamic symbol of interest and the bytes it covers in the file.
pub(crate) struct DynSymbol<'data> {
    pub name: &'data str,
    pub bytes: &'data [u8],
}

pub(crate) struct LibraryFile<'data> {
    file: object::File<'data>,
}

impl<'data> LibraryFile<'data> {
    pub fn parse(data: &'data [u8]) -> Result<Self, ElfError> {
        if data.len() < 4 || data[..4] != *b"\x7fELF" {
            return Err(ElfError::NotALibrary("not an ELF file".into()));
        }
        let file = object::File::parse(data)
            .map_err(|e| ElfError::Malformed(format!("{e} (truncated or damaged ELF file)")))?;
        if file.kind() != ObjectKind::Dynamic {
            return Err(ElfError::NotALibrary(format!(
                "an ELF file of kind {:?}, not a shared library",
                file.kind()
            )));
        }
        // Every section with contents must lie inside the file: catches truncation that leaves
        // the headers readable.
        for section in file.sections() {
            if let Some((offset, size)) = section.file_range() {
                let end = offset.checked_add(size);
                if end.is_none_or(|end| end > data.len() as u64) {
                    return Err(ElfError::Malformed(format!(
                        "section {} ends at byte {}, the file has {} (truncated)",
                        section.name().unwrap_or("?"),
                        end.map_or_else(|| format!("{offset} + {size}"), |e| e.to_string()),
                        data.len()
                    )));
                }
            }
        }
        Ok(LibraryFile { file })
    }

    /// Defined dynamic symbols whose name starts with `prefix`, with their bytes.
    pub fn symbols_with_prefix(&self, prefix: &str) -> Result<Vec<DynSymbol<'data>>, ElfError> {
        let mut out = Vec::new();
        for sym in self.file.dynamic_symbols() {
            let Ok(name) = sym.name() else { continue };
            if !name.starts_with(prefix) || sym.is_undefined() {
                continue;
            }
            out.push(self.symbol_bytes(&sym, name)?);
        }
        Ok(out)
    }

    /// One defined dynamic symbol, by exact name.
    pub fn symbol(&self, name: &str) -> Result<Option<DynSymbol<'data>>, ElfError> {
        for sym in self.file.dynamic_symbols() {
            if sym.name() == Ok(name) && !sym.is_undefined() {
                return self.symbol_bytes(&sym, name).map(Some);
            }
        }
        Ok(None)
    }

    fn symbol_bytes(
        &self,
        sym: &impl ObjectSymbol<'data>,
        name: &str,
    ) -> Result<DynSymbol<'data>, ElfError> {
        let malformed = |what: &str| ElfError::Malformed(format!("symbol {name}: {what}"));
        let index = sym.section_index().ok_or_else(|| malformed("not in a section"))?;
        let section = self.file.section_by_index(index).map_err(|e| malformed(&e.to_string()))?;
        let bytes = section
            .data_range(sym.address(), sym.size())
            .map_err(|e| malformed(&e.to_string()))?
            .ok_or_else(|| malformed("outside its section's file data"))?;
        // The name borrows from the file data; look it up again with that lifetime.
        let name = sym.name().map_err(|e| malformed(&e.to_string()))?;
        Ok(DynSymbol { name, bytes })
    }
}
