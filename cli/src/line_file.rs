//! [`LineFile`]: a file of lines read back by line number without holding its text.
//!
//! One pass over the file checks it (UTF-8, by line) and keeps a sparse index: the
//! byte offset of a line every [`STRIDE`] lines or every [`SPAN`] bytes, whichever comes
//! first (16 bytes a mark, so about 16 KiB per million short lines). A line is read back
//! by reading the block of lines between two marks (at most [`SPAN`] bytes, or one long
//! line) and keeping that block cached: reading lines in order reads the file once.
//! Each block's CRC-32 is kept beside its mark (4 bytes more), and a block read back is
//! checked against it: a file changed in place under the run (rewritten, truncated)
//! reads as unreadable ([`LineFile::changed`]), never as other lines.
//! Standard input is first copied into an unnamed temporary file (`$TMPDIR`), so a task
//! list or argument source from a pipe costs disk, not memory, and can be read again.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The checksum of a block of the index: CRC-32C (iSCSI).
static BLOCK_CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// At most this many lines between two marks of the index.
pub(crate) const STRIDE: u64 = 512;

/// A new mark once a block holds this many bytes.
pub(crate) const SPAN: u64 = 64 * 1024;

/// A file of lines (split on `\n`; the line feed is not part of a line).
#[derive(Debug)]
pub(crate) struct LineFile {
    file: File,
    /// `(line index, byte offset)` of the first line of each block, increasing.
    marks: Vec<(u64, u64)>,
    /// `sums[m]`: the CRC-32C of block `m`'s bytes as indexed.
    sums: Vec<u32>,
    /// Set when a block could not be read back as indexed (the file was changed).
    changed: AtomicBool,
    /// How many lines: a last line without a line feed counts; an empty file has none.
    lines: u64,
    /// The byte offset where the lines end (the file's length when indexed).
    end: u64,
    cache: Mutex<Block>,
}

/// One block of lines, as read back.
#[derive(Debug, Default)]
struct Block {
    /// The index of its mark in `marks`, or `usize::MAX` when empty.
    mark: usize,
    text: String,
    /// Each line's end offset in `text` (the line feed excluded).
    ends: Vec<(u32, u32)>,
}

/// Why a file cannot be a [`LineFile`].
#[derive(Debug)]
pub(crate) enum LineError {
    /// Reading failed.
    Io(std::io::Error),
    /// Line `line` (from 1) is not UTF-8; `byte` is the offset of the first bad byte in
    /// the file.
    NotUtf8 { line: u64, byte: u64 },
}

impl LineFile {
    /// Indexes `file` from byte `start` (past a byte-order mark, say), calling
    /// `each(line index, line)` for every line in order (the line without its `\n`).
    ///
    /// # Errors
    /// A read fails, a line is not UTF-8, or `each` refuses a line (its error is
    /// returned as is).
    pub(crate) fn index<E: From<LineError>>(
        mut file: File,
        start: u64,
        mut each: impl FnMut(u64, &str) -> Result<(), E>,
    ) -> Result<Self, E> {
        file.seek(SeekFrom::Start(start))
            .map_err(|e| E::from(LineError::Io(e)))?;
        let mut reader = BufReader::with_capacity(256 * 1024, &file);
        let mut marks = vec![(0u64, start)];
        let mut sums = Vec::new();
        let mut digest = BLOCK_CRC.digest();
        let (mut at, mut lines) = (start, 0u64);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| E::from(LineError::Io(e)))?;
            if n == 0 {
                break;
            }
            let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let line = std::str::from_utf8(body).map_err(|e| {
                E::from(LineError::NotUtf8 {
                    line: lines + 1,
                    byte: at + e.valid_up_to() as u64,
                })
            })?;
            each(lines, line)?;
            digest.update(&buf);
            let (last_line, last_at) = *marks.last().unwrap_or(&(0, start));
            lines += 1;
            at += n as u64;
            if lines - last_line >= STRIDE || at - last_at >= SPAN {
                marks.push((lines, at));
                sums.push(std::mem::replace(&mut digest, BLOCK_CRC.digest()).finalize());
            }
        }
        drop(reader);
        sums.push(digest.finalize());
        if marks.last().is_some_and(|&(l, _)| l == lines) && marks.len() > 1 {
            marks.pop();
            sums.pop();
        }
        Ok(Self {
            file,
            marks,
            sums,
            changed: AtomicBool::new(false),
            lines,
            end: at,
            cache: Mutex::new(Block {
                mark: usize::MAX,
                ..Block::default()
            }),
        })
    }

    /// How many lines the file holds.
    pub(crate) fn len(&self) -> u64 {
        self.lines
    }

    /// Line `i` (from 0), or `None` past the end (or when the file cannot be read back:
    /// it was changed under the run).
    pub(crate) fn get(&self, i: u64) -> Option<String> {
        self.with(i, str::to_owned)
    }

    /// Whether a block of lines could not be read back as it was indexed (the file was
    /// rewritten or truncated in place since): its lines then read as `None`.
    pub(crate) fn changed(&self) -> bool {
        self.changed.load(Ordering::Relaxed)
    }

    /// Calls `f` with line `i` (from 0); `None` past the end, or when the line's block
    /// cannot be read back as it was indexed (see [`LineFile::changed`]).
    pub(crate) fn with<T>(&self, i: u64, f: impl FnOnce(&str) -> T) -> Option<T> {
        if i >= self.lines {
            return None;
        }
        let mut block = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // Lines read in order stay in the cached block: no search.
        let cached = self.marks.get(block.mark).map(|&(first, _)| first);
        let m = match cached {
            Some(first) if i >= first && i - first < block.ends.len() as u64 => block.mark,
            _ => self.marks.partition_point(|&(l, _)| l <= i) - 1,
        };
        if block.mark != m {
            block.mark = usize::MAX;
            let from = self.marks[m].1;
            let to = self.marks.get(m + 1).map_or(self.end, |&(_, at)| at);
            let mut bytes = vec![0u8; (to - from) as usize];
            let read = self.file.read_exact_at(&mut bytes, from);
            if read.is_err() || BLOCK_CRC.checksum(&bytes) != self.sums[m] {
                self.changed.store(true, Ordering::Relaxed);
                return None;
            }
            let text = String::from_utf8(bytes).ok()?;
            let mut ends = Vec::new();
            let mut s = 0usize;
            for line in text.split_inclusive('\n') {
                let e = s + line.strip_suffix('\n').unwrap_or(line).len();
                ends.push((s as u32, e as u32));
                s += line.len();
            }
            block.text = text;
            block.ends = ends;
            block.mark = m;
        }
        let &(s, e) = block.ends.get((i - self.marks[m].0) as usize)?;
        Some(f(&block.text[s as usize..e as usize]))
    }
}

/// Copies standard input into an unnamed temporary file, returned at offset 0.
///
/// # Errors
/// Reading stdin or writing the temporary file fails.
pub(crate) fn spool_stdin() -> std::io::Result<File> {
    spool(&mut std::io::stdin().lock())
}

/// Opens the file at `path` for reading by line number: a regular file as it is, a
/// stream that cannot be read twice (a FIFO, `/dev/stdin` on a pipe, a shell's
/// `<(...)`, a character device or a socket) copied whole into an unnamed temporary
/// file first, as standard input is (see [`spool_stdin`]).
///
/// # Errors
/// Opening or reading `path`, or writing the temporary file, fails.
pub(crate) fn open_seekable(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::FileTypeExt;
    let mut file = File::open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_fifo() || kind.is_char_device() || kind.is_socket() {
        return spool(&mut file);
    }
    Ok(file)
}

/// Copies `from` to its end into an unnamed temporary file, returned at offset 0.
fn spool(from: &mut impl Read) -> std::io::Result<File> {
    let mut file = tempfile::tempfile()?;
    {
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, &mut file);
        std::io::copy(from, &mut w)?;
        w.flush()?;
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// Whether `file` starts with a UTF-8 byte-order mark.
pub(crate) fn has_bom(file: &mut File) -> std::io::Result<bool> {
    let mut head = [0u8; 3];
    let mut got = 0;
    file.seek(SeekFrom::Start(0))?;
    while got < 3 {
        match file.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(got == 3 && head == [0xef, 0xbb, 0xbf])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(text).unwrap();
        f
    }

    fn idx(text: &[u8]) -> Result<LineFile, LineError> {
        LineFile::index(file(text), 0, |_, _| Ok::<(), LineError>(()))
    }

    #[test]
    fn reads_lines_back_across_blocks_in_any_order() {
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        let lf = idx(text.as_bytes()).unwrap();
        assert_eq!(lf.len(), 2000);
        assert!(lf.marks.len() >= 4, "{}", lf.marks.len());
        for i in [1999, 0, 511, 512, 513, 1024, 7] {
            assert_eq!(lf.get(i).unwrap(), format!("line {i}"));
        }
        assert_eq!(lf.get(2000), None);
    }

    #[test]
    fn a_block_changed_in_place_reads_as_none_and_marks_the_file_changed() {
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        let f = file(text.as_bytes());
        let writer = f.try_clone().unwrap();
        let lf = LineFile::index(f, 0, |_, _| Ok::<(), LineError>(())).unwrap();
        assert_eq!(lf.get(0).unwrap(), "line 0");
        assert!(!lf.changed());
        // Same length, other bytes, in a block not read yet.
        let at = text.find("line 1500").unwrap() as u64;
        writer.write_all_at(b"LINE", at).unwrap();
        assert_eq!(lf.get(1500), None);
        assert!(lf.changed());
        // Truncated: the rest reads as none too, never as empty lines.
        writer.set_len(10).unwrap();
        assert_eq!(lf.get(1999), None);
        // The first block, read again (the cache holds the last block tried), is gone too.
        assert_eq!(lf.get(1), None);
    }

    #[test]
    fn last_line_without_line_feed_and_empty_lines_count() {
        let lf = idx(b"a\n\nb").unwrap();
        assert_eq!(lf.len(), 3);
        assert_eq!(
            (0..3).map(|i| lf.get(i).unwrap()).collect::<Vec<_>>(),
            ["a", "", "b"]
        );
        assert_eq!(idx(b"").unwrap().len(), 0);
        assert_eq!(idx(b"\n").unwrap().len(), 1);
    }

    #[test]
    fn long_lines_close_a_block_by_bytes() {
        let long = "x".repeat(40_000);
        let text = format!("{long}\n{long}\n{long}\nend\n");
        let lf = idx(text.as_bytes()).unwrap();
        assert_eq!(lf.marks.len(), 2);
        assert_eq!(lf.get(3).unwrap(), "end");
        assert_eq!(lf.get(2).unwrap().len(), 40_000);
    }

    #[test]
    fn a_start_offset_skips_bytes_and_non_utf8_names_line_and_byte() {
        let lf = LineFile::index(file(b"XYZa\nb\n"), 3, |_, _| Ok::<(), LineError>(())).unwrap();
        assert_eq!(lf.get(0).unwrap(), "a");
        match idx(b"ok\nbad \xff\n") {
            Err(LineError::NotUtf8 { line, byte }) => assert_eq!((line, byte), (2, 7)),
            other => panic!("{other:?}"),
        }
        let mut f = file(b"\xef\xbb\xbfa");
        assert!(has_bom(&mut f).unwrap());
        assert!(!has_bom(&mut file(b"ab")).unwrap());
    }
}
