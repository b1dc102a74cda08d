//! Task output on its way to sturdy's stdout and stderr without being held whole:
//! [`render`] streams an output file (each line tagged for `--tag`/`--tagstring`) in
//! chunks of 64 KiB, and a [`Spool`] holds what `--keep-order` must keep until its
//! turn: in memory while the held output of all tasks together stays within a budget
//! ([`KEEP_ORDER_BUDGET`]), in an unnamed temporary file (`$TMPDIR`) past it. The
//! master's memory for output is therefore bounded whatever the tasks print.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The bytes of held `--keep-order` output kept in memory, all tasks together: 4 MiB.
pub(crate) const KEEP_ORDER_BUDGET: usize = 4 << 20;

/// The chunk read from an output file at a time.
const CHUNK: usize = 64 * 1024;

/// Streams the file `src` (none: nothing) to `sink` in chunks, each line (a last one
/// without its line feed too) prefixed by `tag` and a tab when there is a tag. Returns
/// the bytes written and the last one.
///
/// # Errors
/// Reading `src` (other than its absence) or `sink` fails.
pub(crate) fn render(
    src: &Path,
    tag: Option<&str>,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<(u64, Option<u8>)> {
    let mut f = match File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, None)),
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; CHUNK];
    let (mut written, mut last, mut line_start) = (0u64, None, true);
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        match tag {
            None => {
                sink(chunk)?;
                written += n as u64;
            }
            Some(tag) => {
                for line in chunk.split_inclusive(|&b| b == b'\n') {
                    if line_start {
                        sink(tag.as_bytes())?;
                        sink(b"\t")?;
                        written += tag.len() as u64 + 1;
                    }
                    sink(line)?;
                    written += line.len() as u64;
                    line_start = line.ends_with(b"\n");
                }
            }
        }
        last = chunk.last().copied();
    }
    Ok((written, last))
}

/// Output held until its turn: in memory within the shared budget, then in a file.
#[derive(Debug, Default)]
pub(crate) struct Spool {
    mem: Vec<u8>,
    file: Option<File>,
    last: Option<u8>,
}

impl Spool {
    /// Appends `bytes`, taking what stays in memory from `budget` (bytes left of the
    /// shared budget); once the budget cannot take them, everything held moves to a
    /// temporary file and its memory goes back to the budget.
    ///
    /// # Errors
    /// The temporary file cannot be made or written.
    pub(crate) fn write(&mut self, bytes: &[u8], budget: &mut usize) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.last = bytes.last().copied();
        if self.file.is_none() && bytes.len() <= *budget {
            self.mem.extend_from_slice(bytes);
            *budget -= bytes.len();
            return Ok(());
        }
        if self.file.is_none() {
            let mut f = tempfile::tempfile()?;
            f.write_all(&self.mem)?;
            *budget += self.mem.len();
            self.mem = Vec::new();
            self.file = Some(f);
        }
        self.file.as_mut().map_or(Ok(()), |f| f.write_all(bytes))
    }

    /// Whether it holds nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    /// Whether what it holds ends without a line feed.
    pub(crate) fn ends_mid_line(&self) -> bool {
        self.last.is_some_and(|b| b != b'\n')
    }

    /// Whether it moved to a file.
    #[cfg(test)]
    pub(crate) fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Writes what it holds to `w` and gives its memory back to `budget`.
    ///
    /// # Errors
    /// Reading the temporary file or writing `w` fails.
    pub(crate) fn drain_to(self, w: &mut impl Write, budget: &mut usize) -> io::Result<()> {
        *budget += self.mem.len();
        w.write_all(&self.mem)?;
        if let Some(mut f) = self.file {
            f.seek(SeekFrom::Start(0))?;
            io::copy(&mut f, w)?;
        }
        w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(text: &[u8], tag: Option<&str>) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        std::fs::write(&p, text).unwrap();
        let mut got = Vec::new();
        let (n, last) = render(&p, tag, |b| {
            got.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(n, got.len() as u64);
        assert_eq!(last, text.last().copied());
        got
    }

    #[test]
    fn render_tags_every_line_across_chunks() {
        assert_eq!(rendered(b"a\nb", Some("T")), b"T\ta\nT\tb");
        assert_eq!(rendered(b"", Some("T")), b"");
        // A line that spans chunks is tagged once.
        let long: Vec<u8> = [vec![b'x'; CHUNK + 10], b"\ny\n".to_vec()].concat();
        let got = rendered(&long, Some("t"));
        assert_eq!(
            got,
            [
                b"t\t".to_vec(),
                long[..CHUNK + 11].to_vec(),
                b"t\ty\n".to_vec()
            ]
            .concat()
        );
        assert_eq!(rendered(&long, None), long);
        let mut none = Vec::new();
        let r = render(Path::new("/nonexistent/sturdy/out"), None, |b| {
            none.extend_from_slice(b);
            Ok(())
        });
        assert_eq!(r.unwrap(), (0, None));
    }

    #[test]
    fn a_spool_past_the_budget_moves_to_a_file_and_gives_memory_back() {
        let mut budget = 10;
        let mut small = Spool::default();
        small.write(b"abc", &mut budget).unwrap();
        assert_eq!(budget, 7);
        let mut big = Spool::default();
        big.write(b"12345", &mut budget).unwrap();
        assert_eq!(budget, 2);
        assert!(!big.spilled());
        big.write(b"6789\n", &mut budget).unwrap();
        assert!(big.spilled());
        assert_eq!(budget, 7, "its 5 bytes in memory went back");
        assert!(!big.ends_mid_line() && small.ends_mid_line() && !small.is_empty());
        let mut out = Vec::new();
        big.drain_to(&mut out, &mut budget).unwrap();
        small.drain_to(&mut out, &mut budget).unwrap();
        assert_eq!(out, b"123456789\nabc");
        assert_eq!(budget, 10);
    }
}
