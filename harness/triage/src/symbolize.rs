//! `file:line` for a finding's frames, from the module objects and the vmlinux that ran.
//!
//! A frame `func+0xOFFSET/0xSIZE [mod]` is resolved in two steps: `func`'s address comes from
//! the object's symbol table (`objdump -t`), then `addr2line` maps address + offset to a source
//! line with the object's DWARF. Both tools are binutils, which building modules needs anyway.
//!
//! A `.ko` is a relocatable object: every section starts at address 0, so `.text`,
//! `.init.text` and `.exit.text` overlap. Its addresses are therefore asked section by section
//! (`addr2line -j SECTION`), with the symbol's value inside its section. A vmlinux is linked:
//! its symbol values are addresses.
//!
//! A return address is looked up one byte earlier, inside the call instruction, so the line is
//! the call's and not the next statement's.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::{Finding, Frame};

/// Resolves frames to source lines with the objects of one kernel and its modules.
#[derive(Default)]
pub struct Symbolizer {
    /// Module objects by module name, `-` written `_` as the kernel does.
    modules: HashMap<String, Object>,
    vmlinux: Option<Object>,
    /// Why frames stayed unresolved, each reason once.
    problems: Mutex<Vec<String>>,
}

/// An object file whose symbol table is read on first use.
struct Object {
    path: PathBuf,
    symbols: OnceLock<Result<SymbolTable, String>>,
}

/// The symbols of an object, by name (a static function's name may occur more than once).
struct SymbolTable {
    /// `ET_REL`: symbol values are offsets within their sections.
    relocatable: bool,
    by_name: HashMap<String, Vec<Symbol>>,
}

struct Symbol {
    value: u64,
    size: u64,
    section: String,
}

/// A frame to look up: its index in the finding and the address to ask `addr2line`.
struct Query {
    frame: usize,
    address: u64,
}

/// A source path as a kernel developer reads it: Debian's kernel packages are built in
/// `debian/build/build_<arch>_<featureset>_<flavour>/`, which says nothing about the source.
fn source_path(file: String) -> String {
    match file.split_once("debian/build/build_") {
        Some((_, rest)) => rest
            .split_once('/')
            .map_or(file.clone(), |(_, path)| path.to_string()),
        None => file,
    }
}

impl Symbolizer {
    /// A symbolizer that knows no object yet.
    pub fn new() -> Symbolizer {
        Symbolizer::default()
    }

    /// A module object with debug info (a `.ko` built with the kernel's config has DWARF when
    /// `CONFIG_DEBUG_INFO` is set), by module name. Read when a frame first needs it.
    pub fn add_module(&mut self, name: &str, ko: &Path) {
        self.modules
            .insert(module_key(name), Object::new(ko.to_path_buf()));
    }

    /// A vmlinux with debug info (Debian's `linux-image-*-dbg` package has
    /// `/usr/lib/debug/boot/vmlinux-RELEASE`), for frames without a `[module]` tag.
    pub fn set_vmlinux(&mut self, vmlinux: &Path) {
        self.vmlinux = Some(Object::new(vmlinux.to_path_buf()));
    }

    /// Fills `file` and `line` of the finding's frames that the known objects resolve. Frames
    /// of other objects, of symbols an object lacks, or without debug info stay as they are;
    /// [`Symbolizer::problems`] says why.
    pub fn symbolize(&self, finding: &mut Finding) {
        // One addr2line run per object and section.
        let mut batches: Vec<(&Object, Option<&str>, Vec<Query>)> = Vec::new();
        for (index, frame) in finding.frames.iter().enumerate() {
            if frame.line.is_some() {
                continue;
            }
            let Some((object, table)) = self.object_for(frame) else {
                continue;
            };
            let Some(symbol) = table.lookup(&frame.function, frame.offset, frame.size) else {
                self.note(format!(
                    "{}: no symbol {} (is it the object that ran?)",
                    object.path.display(),
                    frame.function
                ));
                continue;
            };
            // The call instruction ends where the return address points.
            let offset = match frame.return_address {
                true => frame.offset.saturating_sub(1),
                false => frame.offset,
            };
            let Some(address) = symbol.value.checked_add(offset) else {
                continue;
            };
            let section = table.relocatable.then_some(symbol.section.as_str());
            let query = Query {
                frame: index,
                address,
            };
            match batches
                .iter_mut()
                .find(|(o, s, _)| std::ptr::eq(*o, object) && *s == section)
            {
                Some((_, _, queries)) => queries.push(query),
                None => batches.push((object, section, vec![query])),
            }
        }
        for (object, section, queries) in batches {
            match addr2line(&object.path, section, &queries) {
                Ok(locations) if locations.iter().all(Option::is_none) => self.note(format!(
                    "{}: no line information (built without CONFIG_DEBUG_INFO?)",
                    object.path.display()
                )),
                Ok(locations) => {
                    for (query, location) in queries.iter().zip(locations) {
                        if let Some((file, line)) = location {
                            let frame = &mut finding.frames[query.frame];
                            frame.file = Some(source_path(file));
                            frame.line = Some(line);
                        }
                    }
                }
                Err(problem) => self.note(problem),
            }
        }
    }

    /// Name the function at each of the finding's located bare addresses, from the module's
    /// symbol table (section and offset), and title a kmemleak report by the first of them:
    /// the allocating caller, which `rmmod` left nameless.
    pub fn name_located(&self, finding: &mut Finding) {
        for located in &mut finding.located {
            let Some(object) = self.modules.get(&module_key(&located.module)) else {
                continue;
            };
            let Ok(table) = object.symbols() else {
                continue;
            };
            located.function = table.function_at(&located.section, located.offset);
        }
        crate::layout::retitle_leak(finding);
    }

    /// Why frames stayed unresolved so far (objects that could not be read, symbols missing,
    /// `addr2line` failing), each reason once, in the order they arose.
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .map(|problems| problems.clone())
            .unwrap_or_default()
    }

    /// The object a frame's code is in, with its symbol table, when known and readable.
    fn object_for(&self, frame: &Frame) -> Option<(&Object, &SymbolTable)> {
        let object = match &frame.module {
            Some(module) => self.modules.get(&module_key(module))?,
            None => self.vmlinux.as_ref()?,
        };
        match object.symbols() {
            Ok(table) => Some((object, table)),
            Err(problem) => {
                self.note(problem.clone());
                None
            }
        }
    }

    fn note(&self, problem: String) {
        if let Ok(mut problems) = self.problems.lock() {
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        }
    }
}

/// Module names as the kernel prints them: `-` in a file name is `_` in the module's name.
fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

impl Object {
    fn new(path: PathBuf) -> Object {
        Object {
            path,
            symbols: OnceLock::new(),
        }
    }

    fn symbols(&self) -> &Result<SymbolTable, String> {
        self.symbols.get_or_init(|| SymbolTable::read(&self.path))
    }
}

impl SymbolTable {
    fn read(path: &Path) -> Result<SymbolTable, String> {
        let relocatable = is_relocatable_elf(path)?;
        let output = run("objdump", &[OsArg::Str("-t"), OsArg::Path(path)])?;
        Ok(SymbolTable {
            relocatable,
            by_name: parse_objdump_symbols(&output),
        })
    }

    /// The symbol a printed `name+offset/size` is in. Among same-named symbols (static
    /// functions of different files) the one the offset fits in and whose size is closest to
    /// the printed one: the kernel prints the distance to the next symbol, which includes
    /// padding, so sizes rarely match exactly.
    fn lookup(&self, name: &str, offset: u64, printed_size: u64) -> Option<&Symbol> {
        self.by_name
            .get(name)?
            .iter()
            .filter(|symbol| symbol.size == 0 || offset < symbol.size.max(printed_size))
            .min_by_key(|symbol| symbol.size.abs_diff(printed_size))
    }
}

impl SymbolTable {
    /// The name of the sized symbol of `section` that holds `offset` (a relocatable object's
    /// values are section offsets).
    fn function_at(&self, section: &str, offset: u64) -> Option<String> {
        // `module_init(f)` also names f `init_module` (and exit `cleanup_module`): the alias
        // says less than the function's own name.
        let is_alias = |name: &str| name == "init_module" || name == "cleanup_module";
        let mut candidates: Vec<(&String, &Symbol)> = self
            .by_name
            .iter()
            .flat_map(|(name, symbols)| symbols.iter().map(move |s| (name, s)))
            .collect();
        candidates.sort_by_key(|(name, _)| (is_alias(name), name.as_str()));
        candidates
            .into_iter()
            .find(|(_, s)| {
                s.section == section && s.size > 0 && (s.value..s.value + s.size).contains(&offset)
            })
            .map(|(name, _)| name.clone())
    }
}

/// Reads `objdump -t` lines: `VALUE FLAGS SECTION<TAB>SIZE [.hidden] NAME`. Symbols of no
/// section (`*ABS*`, `*UND*`, `*COM*`) have no code.
fn parse_objdump_symbols(output: &str) -> HashMap<String, Vec<Symbol>> {
    let mut by_name: HashMap<String, Vec<Symbol>> = HashMap::new();
    for line in output.lines() {
        let Some((left, right)) = line.split_once('\t') else {
            continue;
        };
        let mut left_words = left.split_whitespace();
        let (Some(value), Some(section)) = (left_words.next(), left_words.next_back()) else {
            continue;
        };
        let mut right_words = right.split_whitespace();
        let (Some(size), Some(name)) = (right_words.next(), right_words.next_back()) else {
            continue;
        };
        if section.starts_with('*') {
            continue;
        }
        let (Ok(value), Ok(size)) = (
            u64::from_str_radix(value, 16),
            u64::from_str_radix(size, 16),
        ) else {
            continue;
        };
        by_name.entry(name.to_string()).or_default().push(Symbol {
            value,
            size,
            section: section.to_string(),
        });
    }
    by_name
}

/// Whether `path` is a relocatable ELF object (a `.ko`) rather than a linked one (vmlinux).
fn is_relocatable_elf(path: &Path) -> Result<bool, String> {
    const ET_REL: u16 = 1;
    let mut header = [0u8; 18];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if &header[..4] != b"\x7fELF" {
        return Err(format!("{}: not an ELF object", path.display()));
    }
    // e_type, in the byte order EI_DATA names (1 little-endian, 2 big-endian).
    let e_type = match header[5] {
        2 => u16::from_be_bytes([header[16], header[17]]),
        _ => u16::from_le_bytes([header[16], header[17]]),
    };
    Ok(e_type == ET_REL)
}

/// The source line of each query's address, in order; `None` where the object has no line
/// for it (no debug info, or an address outside any compilation unit).
fn addr2line(
    object: &Path,
    section: Option<&str>,
    queries: &[Query],
) -> Result<Vec<Option<(String, u32)>>, String> {
    let addresses: Vec<String> = queries
        .iter()
        .map(|q| format!("{:#x}", q.address))
        .collect();
    let mut args = vec![OsArg::Str("-e"), OsArg::Path(object)];
    if let Some(section) = section {
        args.extend([OsArg::Str("-j"), OsArg::Str(section)]);
    }
    args.extend(addresses.iter().map(|a| OsArg::Str(a)));
    let output = run("addr2line", &args)?;
    // Without `-i` or `-f`, one line per address.
    let locations: Vec<_> = output.lines().map(parse_location).collect();
    if locations.len() != queries.len() {
        return Err(format!(
            "addr2line -e {}: {} lines for {} addresses",
            object.display(),
            locations.len(),
            queries.len()
        ));
    }
    Ok(locations)
}

/// `FILE:LINE`, maybe followed by ` (discriminator N)`; `??:0` and `??:?` when unknown.
fn parse_location(text: &str) -> Option<(String, u32)> {
    let text = text.split(" (discriminator").next().unwrap_or(text).trim();
    let (file, line) = text.rsplit_once(':')?;
    let line: u32 = line.parse().ok()?;
    if file.is_empty() || file == "??" || line == 0 {
        return None;
    }
    Some((file.to_string(), line))
}

/// An argument to a binutils tool.
enum OsArg<'a> {
    Str(&'a str),
    /// A file, made to look like one even when its name starts with `-`.
    Path(&'a Path),
}

/// Runs a binutils tool and returns its standard output.
fn run(tool: &str, args: &[OsArg]) -> Result<String, String> {
    let mut command = Command::new(tool);
    for arg in args {
        match arg {
            OsArg::Str(text) => command.arg(text),
            OsArg::Path(path) if path.is_relative() => command.arg(Path::new(".").join(path)),
            OsArg::Path(path) => command.arg(path),
        };
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run {tool} (from binutils): {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "{tool} failed ({}): {}",
            output.status,
            stderr.trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debians_build_directory_is_dropped_from_kernel_paths() {
        assert_eq!(
            source_path("debian/build/build_amd64_none_amd64/kernel/time/timer.c".into()),
            "kernel/time/timer.c"
        );
        assert_eq!(source_path("/src/foo/foo.c".into()), "/src/foo/foo.c");
    }

    #[test]
    fn objdump_symbol_lines_give_value_size_and_section() {
        let output = "\
/tmp/m/symtest.ko:     file format elf64-x86-64

SYMBOL TABLE:
0000000000000000 l    df *ABS*\t0000000000000000 symtest.c
0000000000000010 l     F .text\t0000000000000015 symtest_check
0000000000000010 l     F .exit.text\t0000000000000017 symtest_exit
0000000000000000 g     F .text\t0000000000000020 .hidden helper
0000000000000000         *UND*\t0000000000000000 __warn_printk
";
        let table = parse_objdump_symbols(output);
        let check = &table["symtest_check"][0];
        assert_eq!((check.value, check.size), (0x10, 0x15));
        assert_eq!(check.section, ".text");
        assert_eq!(table["symtest_exit"][0].section, ".exit.text");
        assert_eq!(table["helper"][0].size, 0x20);
        assert!(!table.contains_key("symtest.c"));
        assert!(!table.contains_key("__warn_printk"));
    }

    #[test]
    fn same_named_symbols_are_told_apart_by_the_printed_size() {
        let table = SymbolTable {
            relocatable: true,
            by_name: HashMap::from([(
                "helper".to_string(),
                vec![
                    Symbol {
                        value: 0x100,
                        size: 0x80,
                        section: ".text".into(),
                    },
                    Symbol {
                        value: 0x10,
                        size: 0x15,
                        section: ".text".into(),
                    },
                ],
            )]),
        };
        assert_eq!(table.lookup("helper", 0x5, 0x20).unwrap().value, 0x10);
        assert_eq!(table.lookup("helper", 0x40, 0x90).unwrap().value, 0x100);
        assert!(table.lookup("other", 0, 0x10).is_none());
    }

    #[test]
    fn addr2line_locations_drop_discriminators_and_unknowns() {
        assert_eq!(
            parse_location("/tmp/m/symtest.c:9 (discriminator 1)"),
            Some(("/tmp/m/symtest.c".into(), 9))
        );
        assert_eq!(
            parse_location("./include/linux/list.h:87"),
            Some(("./include/linux/list.h".into(), 87))
        );
        assert_eq!(parse_location("??:0"), None);
        assert_eq!(parse_location("??:?"), None);
        assert_eq!(parse_location(""), None);
    }
}
