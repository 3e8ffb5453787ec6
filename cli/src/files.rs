//! Files the commands read and write, where `-` names standard input or
//! standard output, as it does for curl, tar and every Unix tool.

use std::io::{Read, Write};
use std::path::Path;

use crate::failure::Failure;

/// Whether `path` is `-`: standard input or output rather than a file.
pub(crate) fn is_std(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// The bytes of `path`, or of standard input for `-`. A file that cannot
/// be read is refused input (exit 5), naming the file.
pub(crate) fn read_input(path: &Path) -> Result<Vec<u8>, Failure> {
    if is_std(path) {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map_err(|e| Failure::trouble(format!("standard input: {e}")))?;
        return Ok(bytes);
    }
    std::fs::read(path).map_err(|e| Failure::refused(format!("{}: {e}", path.display())))
}

/// Writes `bytes` to `path`, or to standard output for `-`.
pub(crate) fn write_output(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    if is_std(path) {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes).and_then(|()| out.flush()).map_err(|e| Failure::trouble(format!("standard output: {e}")))
    } else {
        std::fs::write(path, bytes).map_err(|e| Failure::trouble(format!("{}: {e}", path.display())))
    }
}
