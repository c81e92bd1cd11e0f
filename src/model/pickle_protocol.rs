//! Pickles of protocols 4 and 5 (`torch.save(..., pickle_protocol=4)`) rewritten as protocol 2,
//! which candle's unpickler reads. The two differ in how they spell the same objects:
//!
//! - `FRAME` marks (protocol 4's framing) carry no object and are dropped;
//! - `SHORT_BINUNICODE` and `BINUNICODE8` strings become `BINUNICODE`;
//! - `MEMOIZE` (store at the memo's next index) becomes `LONG_BINPUT` with that index;
//! - `STACK_GLOBAL` takes a module and a name pushed as strings before it; it becomes `GLOBAL`
//!   with both written inline. So strings are held back until it is known whether a
//!   `STACK_GLOBAL` consumes them, and a memoized string is remembered here and written inline
//!   wherever a `BINGET` fetches it (the memo keeps its other entries at their own indices).
//!
//! Every other op-code is copied with its argument; one this module does not know is an error
//! naming it.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};

/// The op-codes this module reads, by byte.
mod op {
    pub const PROTO: u8 = 0x80;
    pub const FRAME: u8 = 0x95;
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE: u8 = b'X';
    pub const BINUNICODE8: u8 = 0x8d;
    pub const MEMOIZE: u8 = 0x94;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const GLOBAL: u8 = b'c';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
}

/// Bytes of argument that follow a protocol-2 op-code copied as it is: a fixed count, or a
/// length field of that many bytes followed by that many bytes.
enum Argument {
    Fixed(usize),
    Counted(usize),
}

fn argument(code: u8) -> Option<Argument> {
    use Argument::{Counted, Fixed};
    Some(match code {
        // No argument: tuples, marks, dicts, lists, builds, persistent ids, booleans, None.
        b')' | b'R' | b'(' | b't' | 0x85 | 0x86 | 0x87 | 0x88 | 0x89 | b'N' | b's' | b'u'
        | b'}' | b'd' | b'b' | b'.' | 0x81 | b']' | b'a' | b'e' | b'Q' | b'l' | b'0' => Fixed(0),
        b'K' => Fixed(1),
        b'M' => Fixed(2),
        b'J' => Fixed(4),
        b'G' => Fixed(8),
        0x8a | b'C' | b'U' => Counted(1),
        0x8b | b'B' | b'T' => Counted(4),
        _ => return None,
    })
}

/// A reader over the pickle's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.context("the pickle ends inside an op-code's argument")?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn uint(&mut self, n: usize) -> Result<u64> {
        let mut value = 0u64;
        for (i, &b) in self.take(n)?.iter().enumerate() {
            value |= u64::from(b) << (8 * i);
        }
        Ok(value)
    }

    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = &self.bytes[self.at..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .context("the pickle ends inside a GLOBAL")?;
        let line = self.take(n + 1)?;
        Ok(&line[..n])
    }
}

/// The pickle `bytes` as protocol 2, when they are protocol 4 or 5 (else unchanged).
pub fn as_protocol_2(bytes: &[u8]) -> Result<Vec<u8>> {
    match bytes {
        [op::PROTO, 4 | 5, ..] => rewrite(bytes),
        _ => Ok(bytes.to_vec()),
    }
}

fn rewrite(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut r = Reader { bytes, at: 0 };
    let mut out = Vec::with_capacity(bytes.len());
    // Strings pushed and not yet written: a STACK_GLOBAL may take them.
    let mut held: Vec<String> = Vec::new();
    // Memo entries that are strings, by index; the memo's size (MEMOIZE's next index).
    let mut strings: HashMap<u32, String> = HashMap::new();
    let mut memo_size = 0u32;
    let flush = |out: &mut Vec<u8>, held: &mut Vec<String>| {
        for s in held.drain(..) {
            out.push(op::BINUNICODE);
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    };
    while r.at < bytes.len() {
        let code = r.take(1)?[0];
        match code {
            op::PROTO => {
                r.take(1)?;
                out.extend_from_slice(&[op::PROTO, 2]);
            }
            op::FRAME => {
                r.take(8)?;
            }
            op::SHORT_BINUNICODE | op::BINUNICODE | op::BINUNICODE8 => {
                let width = match code {
                    op::SHORT_BINUNICODE => 1,
                    op::BINUNICODE => 4,
                    _ => 8,
                };
                let n = usize::try_from(r.uint(width)?).context("a string longer than memory")?;
                let text = std::str::from_utf8(r.take(n)?).context("a string that is not UTF-8")?;
                if text.len() > u32::MAX as usize {
                    bail!("a string longer than protocol 2 can hold");
                }
                held.push(text.to_string());
            }
            op::MEMOIZE => {
                match held.last() {
                    Some(s) => {
                        strings.insert(memo_size, s.clone());
                    }
                    None => {
                        out.push(op::LONG_BINPUT);
                        out.extend_from_slice(&memo_size.to_le_bytes());
                    }
                }
                memo_size += 1;
            }
            op::BINPUT | op::LONG_BINPUT => {
                let index = r.uint(if code == op::BINPUT { 1 } else { 4 })? as u32;
                match held.last() {
                    Some(s) => {
                        strings.insert(index, s.clone());
                    }
                    None => {
                        out.push(op::LONG_BINPUT);
                        out.extend_from_slice(&index.to_le_bytes());
                    }
                }
                memo_size = memo_size.max(index + 1);
            }
            op::BINGET | op::LONG_BINGET => {
                let index = r.uint(if code == op::BINGET { 1 } else { 4 })? as u32;
                match strings.get(&index) {
                    Some(s) => held.push(s.clone()),
                    None => {
                        flush(&mut out, &mut held);
                        out.push(op::LONG_BINGET);
                        out.extend_from_slice(&index.to_le_bytes());
                    }
                }
            }
            op::STACK_GLOBAL => {
                let (Some(name), Some(module)) = (held.pop(), held.pop()) else {
                    bail!("a STACK_GLOBAL without its module and name strings before it");
                };
                flush(&mut out, &mut held);
                out.push(op::GLOBAL);
                for part in [module, name] {
                    if part.contains('\n') {
                        bail!("a global's name holds a line break");
                    }
                    out.extend_from_slice(part.as_bytes());
                    out.push(b'\n');
                }
            }
            op::GLOBAL => {
                flush(&mut out, &mut held);
                out.push(op::GLOBAL);
                for _ in 0..2 {
                    out.extend_from_slice(r.line()?);
                    out.push(b'\n');
                }
            }
            other => {
                let arg = argument(other).with_context(|| {
                    format!("pickle op-code 0x{other:02x} of protocol 4/5 is not read")
                })?;
                flush(&mut out, &mut held);
                out.push(other);
                match arg {
                    Argument::Fixed(n) => out.extend_from_slice(r.take(n)?),
                    Argument::Counted(width) => {
                        let field = r.take(width)?;
                        out.extend_from_slice(field);
                        let n = field
                            .iter()
                            .enumerate()
                            .fold(0u64, |v, (i, &b)| v | (u64::from(b) << (8 * i)));
                        let n = usize::try_from(n).context("an argument longer than memory")?;
                        out.extend_from_slice(r.take(n)?);
                    }
                }
            }
        }
    }
    flush(&mut out, &mut held);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_4_spellings_become_protocol_2() {
        // PROTO 4, FRAME, "collections" MEMOIZE, "OrderedDict" MEMOIZE, STACK_GLOBAL, MEMOIZE,
        // EMPTY_TUPLE, REDUCE, then the memoized "collections" fetched as a string, STOP.
        let mut p = vec![0x80, 4, 0x95];
        p.extend_from_slice(&[0; 8]);
        for s in ["collections", "OrderedDict"] {
            p.push(0x8c);
            p.push(s.len() as u8);
            p.extend_from_slice(s.as_bytes());
            p.push(0x94);
        }
        p.extend_from_slice(&[0x93, 0x94, b')', b'R', b'h', 0, b'.']);
        let out = as_protocol_2(&p).unwrap();
        let mut want = vec![0x80, 2, b'c'];
        want.extend_from_slice(b"collections\nOrderedDict\n");
        want.extend_from_slice(&[b'r', 2, 0, 0, 0, b')', b'R', b'X', 11, 0, 0, 0]);
        want.extend_from_slice(b"collections");
        want.push(b'.');
        assert_eq!(out, want);
        // Truncated and unknown op-codes are errors.
        assert!(as_protocol_2(&[0x80, 4, 0x8c, 5, b'a']).is_err());
        assert!(as_protocol_2(&[0x80, 4, 0x96]).is_err());
        // Protocol 2 passes through.
        assert_eq!(
            as_protocol_2(&[0x80, 2, b'.']).unwrap(),
            vec![0x80, 2, b'.']
        );
    }
}
