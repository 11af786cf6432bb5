//! Decode stage: turns the bytes of one object (a file, an S3 object, stdin)
//! into the uncompressed JSON text that the parse stage reads in place.
//!
//! Owns gzip detection (by magic bytes, never by name), the decompressed-size
//! cap that stops gzip bombs, and the padding simd-json needs after the data.
//! It does not know about JSON or records.
//!
//! Two decoders, chosen per object:
//! - **libdeflate, whole buffer** (the fast path, ~2x a streaming inflater
//!   here): member by member through `libdeflate_gzip_decompress_ex`, which
//!   reports how much input each member consumed, so concatenated
//!   (multi-member) gzip is decoded completely. The safe `libdeflater`
//!   wrapper cannot be used: it silently ignores bytes after member one.
//! - **flate2 streaming** (the recovery path): when libdeflate reports bad
//!   data, a streaming decoder re-reads the object and keeps every byte it
//!   could decode before the damage, so a truncated file still yields its
//!   complete records. The damage is reported as an error either way.

use std::io::Read;

use thiserror::Error;

/// Bytes of slack simd-json reads past the end of the data
/// (`simd_json::INPUT_PADDING`); every decoded buffer carries them.
pub const PADDING: usize = simd_json::INPUT_PADDING;

/// Default cap on the decompressed size of one object: 1 GiB. CloudTrail's
/// own files are a few MB; anything near this is a bomb or a mistake.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 1 << 30;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Why an object could not be decoded (completely).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The decompressed size passed the cap: a gzip bomb, or a cap set too low.
    #[error("decompressed size exceeds the cap of {cap} bytes (gzip bomb?)")]
    TooLarge { cap: u64 },
    /// The gzip stream is damaged or ends early. `decoded` bytes before the
    /// damage were recovered and are still parsed.
    #[error(
        "corrupt or truncated gzip at compressed offset {offset}: {reason} ({decoded} bytes recovered before it)"
    )]
    Corrupt {
        offset: u64,
        decoded: u64,
        reason: String,
    },
    /// Bytes after the last complete gzip member that are not another member.
    #[error("{len} bytes of trailing garbage after the gzip data at offset {offset}")]
    TrailingGarbage { offset: u64, len: u64 },
}

/// The decoded text of one object plus [`PADDING`] spare bytes after it.
#[derive(Debug, Default)]
pub struct Decoded {
    /// `len` bytes of data followed by at least [`PADDING`] bytes of slack.
    pub buf: Vec<u8>,
    /// Length of the data in `buf`.
    pub len: usize,
    /// Whether the input was gzip.
    pub compressed: bool,
    /// A problem met while decoding. The data is what could be recovered
    /// (possibly empty) and is still worth parsing.
    pub error: Option<DecodeError>,
}

impl Decoded {
    /// The data without the padding.
    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The most `compressed` bytes of deflate data can expand to (a 1032:1
/// ratio is deflate's ceiling), plus a little for tiny inputs.
pub fn plausible_size(compressed: usize) -> usize {
    compressed.saturating_mul(1032).saturating_add(4096)
}

/// The size a gzip object announces in its trailer (ISIZE: the last
/// member's size mod 2^32): a hint, never trusted as a bound.
pub(crate) fn gzip_size_hint(input: &[u8]) -> u64 {
    input.len().checked_sub(4).map_or(0, |at| {
        u64::from(u32::from_le_bytes(input[at..].try_into().expect("4 bytes")))
    })
}

/// True when `bytes` start with the gzip magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Decode one whole object into `out` (a buffer to reuse: its contents are
/// discarded, and reusing the previous object's buffer avoids page-faulting
/// fresh memory per object). Plain input is copied, so the caller keeps the
/// original: the parse stage's recovery path needs it after a failed parse.
pub fn decode(input: &[u8], max_bytes: u64, mut out: Vec<u8>) -> Decoded {
    if is_gzip(input) {
        return gunzip(input, max_bytes, out);
    }
    out.clear();
    if input.len() as u64 > max_bytes {
        out.resize(PADDING, b' ');
        return Decoded {
            buf: out,
            len: 0,
            compressed: false,
            error: Some(DecodeError::TooLarge { cap: max_bytes }),
        };
    }
    out.reserve_exact(input.len() + PADDING);
    out.extend_from_slice(input);
    out.resize(input.len() + PADDING, b' ');
    Decoded {
        buf: out,
        len: input.len(),
        compressed: false,
        error: None,
    }
}

/// Decode gzip data (one or more members) with libdeflate, falling back to
/// the streaming decoder to recover a prefix when the data is damaged.
pub fn gunzip(input: &[u8], max_bytes: u64, mut out: Vec<u8>) -> Decoded {
    let cap = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let mut inflater = Inflater::new();
    // ISIZE (last 4 bytes) is the size of the last member mod 2^32: exact for
    // the usual single-member file, a floor otherwise. It is written by
    // whoever made the file, so it only ever sizes the first allocation, and
    // never past what the input could expand to: deflate turns one byte
    // into at most 1032, so a 534-byte file claiming 1 GiB gets 551 KB,
    // grown (doubling) only as real output arrives.
    let isize_hint = usize::try_from(gzip_size_hint(input)).unwrap_or(usize::MAX);
    let plausible = plausible_size(input.len());
    let mut guess = isize_hint.min(plausible).min(cap);
    // `out` is only ever grown, never cleared: zeroing a reused 10 MB buffer
    // per object cost ~3% of a scan. Bytes past `len` are padding, whose
    // content simd-json does not care about.
    let mut pos = 0usize;
    let mut len = 0usize;
    let error = loop {
        if pos >= input.len() {
            break None;
        }
        if !is_gzip(&input[pos..]) {
            // Zero padding after the last member is common (tape, some
            // uploaders) and harmless; anything else is reported.
            if input[pos..].iter().all(|&b| b == 0) {
                break None;
            }
            break Some(DecodeError::TrailingGarbage {
                offset: pos as u64,
                len: (input.len() - pos) as u64,
            });
        }
        let want = (len + guess.max(64 << 10)).min(cap);
        if out.len() < want + PADDING {
            // Doubling (a reused buffer grows rarely: each growth is a
            // fresh, page-faulted allocation), but never past the cap (a
            // 60 MB buffer grown for 61 MB under a 64 MB cap holds 64), nor
            // past what the rest of the input can expand to (many tiny
            // members each asked for a doubling: 104 bytes of gzip took
            // 512 KiB; found by the decode fuzz target).
            let limit = cap.min(len + plausible_size(input.len() - pos).max(64 << 10));
            let target =
                (want + PADDING).max(out.capacity().saturating_mul(2).min(limit + PADDING));
            out.reserve_exact(target - out.len());
            out.resize(want + PADDING, 0);
        }
        match inflater.member(&input[pos..], &mut out[len..want]) {
            Member::Done { consumed, produced } => {
                pos += consumed;
                len += produced;
                guess = isize_hint.min(plausible_size(input.len() - pos)).min(cap);
            }
            Member::NoSpace if want >= cap => break Some(DecodeError::TooLarge { cap: max_bytes }),
            Member::NoSpace => guess = guess.max(64 << 10).saturating_mul(2),
            Member::BadData => {
                // Recover what a streaming decoder can read before the damage.
                let (recovered, mut err) =
                    stream_recover(&input[pos..], pos as u64, cap - len, max_bytes);
                out.truncate(len);
                out.extend_from_slice(&recovered);
                len = out.len();
                out.resize(len + PADDING, b' ');
                if let DecodeError::Corrupt { decoded, .. } = &mut err {
                    *decoded = len as u64;
                }
                break Some(err);
            }
        }
    };
    if out.len() < len + PADDING {
        out.resize(len + PADDING, b' ');
    }
    Decoded {
        buf: out,
        len,
        compressed: true,
        error,
    }
}

/// Stream-decode damaged gzip and keep the prefix that decodes; the returned
/// error says where (in compressed bytes) and why it stopped.
///
/// A read that fails returns none of what it decoded before the failure, so
/// after a first pass in large reads fails, a second pass skips what the
/// first kept and goes on a byte at a time: every decodable byte is kept
/// (the records of a partial download before the next member, say), and
/// the slow pass covers one read's worth.
fn stream_recover(
    input: &[u8],
    base_offset: u64,
    room: usize,
    max_bytes: u64,
) -> (Vec<u8>, DecodeError) {
    let mut out = Vec::new();
    let mut stop = decode_until_error(input, &mut out, room, 0, 256 << 10);
    if let Stop::Error { .. } = stop {
        let skip = out.len();
        stop = decode_until_error(input, &mut out, room, skip, 1);
    }
    let (reason, unread) = match stop {
        Stop::TooLarge => return (out, DecodeError::TooLarge { cap: max_bytes }),
        // A clean end although libdeflate refused the data: the damage is
        // in a trailer (CRC or length), which flate2 checks less.
        Stop::End { unread } => (
            "checksum or length mismatch in a gzip trailer".to_string(),
            unread,
        ),
        Stop::Error { reason, unread } => (reason, unread),
    };
    let offset = base_offset + (input.len() - unread) as u64;
    let decoded = out.len() as u64;
    (
        out,
        DecodeError::Corrupt {
            offset,
            decoded,
            reason,
        },
    )
}

/// Why [`decode_until_error`] stopped; `unread` is compressed bytes left.
enum Stop {
    TooLarge,
    End { unread: usize },
    Error { reason: String, unread: usize },
}

/// Decode `input` from its start, drop the first `skip` bytes decoded
/// (kept by an earlier pass), append the rest to `out` in reads of `step`
/// bytes, up to `room` bytes in all.
fn decode_until_error(
    input: &[u8],
    out: &mut Vec<u8>,
    room: usize,
    skip: usize,
    step: usize,
) -> Stop {
    // `bufread` over a slice: the slice it holds is exactly what is unread.
    let mut dec = flate2::bufread::MultiGzDecoder::new(input);
    let mut chunk = vec![0u8; 256 << 10];
    let mut skip = skip;
    loop {
        let want = if skip > 0 {
            skip.min(chunk.len())
        } else {
            step.min(chunk.len())
        };
        match dec.read(&mut chunk[..want]) {
            Ok(0) => {
                return Stop::End {
                    unread: dec.get_ref().len(),
                };
            }
            Ok(n) if skip > 0 => skip -= n,
            Ok(n) if out.len() + n > room => return Stop::TooLarge,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) => {
                return Stop::Error {
                    reason: e.to_string(),
                    unread: dec.get_ref().len(),
                };
            }
        }
    }
}

enum Member {
    Done { consumed: usize, produced: usize },
    NoSpace,
    BadData,
}

/// Owns one libdeflate decompressor (a few KB of tables); not shared between
/// threads at once, hence one per call of [`gunzip`].
struct Inflater(std::ptr::NonNull<libdeflate_sys::libdeflate_decompressor>);

impl Inflater {
    fn new() -> Self {
        // SAFETY: plain allocation; null means out of memory.
        let p = unsafe { libdeflate_sys::libdeflate_alloc_decompressor() };
        Self(std::ptr::NonNull::new(p).expect("libdeflate: out of memory"))
    }

    /// Decode the first gzip member of `input` into `out`.
    fn member(&mut self, input: &[u8], out: &mut [u8]) -> Member {
        let mut consumed = 0usize;
        let mut produced = 0usize;
        // SAFETY: the pointers and lengths come from live slices; libdeflate
        // writes at most `out.len()` bytes and reads at most `input.len()`.
        let ret = unsafe {
            libdeflate_sys::libdeflate_gzip_decompress_ex(
                self.0.as_ptr(),
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().cast(),
                out.len(),
                &mut consumed,
                &mut produced,
            )
        };
        match ret {
            libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS => {
                Member::Done { consumed, produced }
            }
            libdeflate_sys::libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => Member::NoSpace,
            _ => Member::BadData,
        }
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: allocated by libdeflate_alloc_decompressor, freed once.
        unsafe { libdeflate_sys::libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("{{\"eventID\":\"{i}\"}}\n"))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn plain_input_is_copied_with_padding() {
        let d = decode(b"{\"a\":1}", DEFAULT_MAX_OBJECT_BYTES, Vec::new());
        assert_eq!(d.data(), b"{\"a\":1}");
        assert!(d.buf.len() >= d.len + PADDING);
        assert!(!d.compressed && d.error.is_none());
    }

    #[test]
    fn single_and_multi_member_gzip() {
        let a = text(1000);
        let d = decode(&gz(&a), DEFAULT_MAX_OBJECT_BYTES, Vec::new());
        assert_eq!((d.data(), d.compressed, &d.error), (&a[..], true, &None));

        // Concatenated members decode completely, whatever the last ISIZE says.
        let b = text(50_000);
        let mut multi = gz(&b);
        multi.extend(gz(b"tail"));
        let d = decode(&multi, DEFAULT_MAX_OBJECT_BYTES, vec![1, 2, 3]);
        let mut want = b.clone();
        want.extend_from_slice(b"tail");
        assert_eq!(d.data(), &want[..]);
        assert!(d.error.is_none());
    }

    #[test]
    fn gzip_bomb_is_refused() {
        let zeros = vec![0u8; 8 << 20];
        let d = decode(&gz(&zeros), 1 << 20, Vec::new());
        assert_eq!(d.error, Some(DecodeError::TooLarge { cap: 1 << 20 }));
        assert!(d.len <= 1 << 20);
        // A lying ISIZE does not help: the cap holds on the real output.
        let mut lying = gz(&zeros);
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&16u32.to_le_bytes());
        let d = decode(&lying, 1 << 20, Vec::new());
        assert!(matches!(
            d.error,
            Some(DecodeError::TooLarge { .. }) | Some(DecodeError::Corrupt { .. })
        ));
        assert!(d.len <= 1 << 20);
    }

    /// A few hundred bytes of gzip that claim (in their trailer) to expand
    /// to almost 4 GiB: the first allocation follows what the input can
    /// really give, not the claim.
    #[test]
    fn a_lying_size_claim_does_not_size_the_buffer() {
        let a = text(200);
        let mut z = gz(&a);
        let n = z.len();
        z[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        // Truncated too, as in the reported case: the claim is all there is.
        let cut = &z[..n - 8];
        let mut cut = cut.to_vec();
        cut.extend_from_slice(&u32::MAX.to_le_bytes());
        for input in [&z[..], &cut[..]] {
            let d = decode(input, DEFAULT_MAX_OBJECT_BYTES, Vec::new());
            assert!(
                d.buf.capacity() <= plausible_size(input.len()) * 2 + PADDING,
                "{} bytes allocated for {} bytes of gzip",
                d.buf.capacity(),
                input.len()
            );
            assert_eq!(&d.data()[..d.len.min(a.len())], &a[..d.len.min(a.len())]);
        }
    }

    #[test]
    fn truncated_gzip_recovers_the_prefix() {
        let a = text(20_000);
        let z = gz(&a);
        let cut = &z[..z.len() / 2];
        let d = decode(cut, DEFAULT_MAX_OBJECT_BYTES, Vec::new());
        match &d.error {
            Some(DecodeError::Corrupt { decoded, .. }) => assert_eq!(*decoded as usize, d.len),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(d.len > a.len() / 4, "recovered only {} bytes", d.len);
        assert_eq!(d.data(), &a[..d.len]);
    }

    #[test]
    fn trailing_garbage_and_zero_padding() {
        let a = text(10);
        let mut z = gz(&a);
        z.extend_from_slice(&[0; 100]);
        let d = decode(&z, DEFAULT_MAX_OBJECT_BYTES, Vec::new());
        assert_eq!((d.data(), &d.error), (&a[..], &None));
        let mut z = gz(&a);
        let at = z.len() as u64;
        z.extend_from_slice(b"garbage");
        let d = decode(&z, DEFAULT_MAX_OBJECT_BYTES, Vec::new());
        assert_eq!(d.data(), &a[..]);
        assert_eq!(
            d.error,
            Some(DecodeError::TrailingGarbage { offset: at, len: 7 })
        );
    }

    #[test]
    fn flipped_byte_is_reported() {
        let a = text(5_000);
        let mut z = gz(&a);
        let mid = z.len() / 2;
        z[mid] ^= 0x55;
        let d = decode(&z, DEFAULT_MAX_OBJECT_BYTES, Vec::new());
        assert!(
            matches!(d.error, Some(DecodeError::Corrupt { .. })),
            "{:?}",
            d.error
        );
    }

    /// All a raw inflate can get out of `member` (a gzip member whose
    /// 10-byte header has no options), fed whole, without checking an end:
    /// the most any decoder can recover from it.
    fn decodable_prefix(member: &[u8]) -> Vec<u8> {
        let mut raw = flate2::Decompress::new(false);
        let mut out = Vec::with_capacity(64 << 20);
        let _ = raw.decompress_vec(&member[10..], &mut out, flate2::FlushDecompress::None);
        out
    }

    /// A partial download followed by a whole member (`cat` of a cut file
    /// and a good one), and a member damaged in its middle: everything the
    /// damaged member can give is kept, not a read's worth less.
    #[test]
    fn damaged_member_keeps_all_it_can_give() {
        let a = text(150_000); // ~2.8 MB, compressing to several 256 KiB reads
        let z = gz(&a);
        for cut_at in [z.len() / 3, z.len() / 2, z.len() - 100] {
            let cut = &z[..cut_at];
            let want = decodable_prefix(cut);
            assert!(want.len() > 100_000 && a.starts_with(&want));
            let mut input = cut.to_vec();
            input.extend(gz(&text(1000)));
            let d = decode(&input, DEFAULT_MAX_OBJECT_BYTES, Vec::new());
            assert!(
                matches!(d.error, Some(DecodeError::Corrupt { .. })),
                "{:?}",
                d.error
            );
            assert!(
                d.len >= want.len(),
                "cut at {cut_at}: kept {} bytes of {} decodable",
                d.len,
                want.len()
            );
            assert_eq!(&d.data()[..want.len()], &want[..]);
        }
        // A flipped byte: what comes before it decodes, all of it.
        let mut flipped = z.clone();
        let mid = z.len() / 2;
        flipped[mid] ^= 0x55;
        let want = decodable_prefix(&flipped[..mid]);
        let d = decode(&flipped, DEFAULT_MAX_OBJECT_BYTES, Vec::new());
        assert!(d.len >= want.len(), "kept {} of {}", d.len, want.len());
        assert_eq!(&d.data()[..want.len()], &want[..]);
    }

    /// Many tiny members: the buffer follows what the input can expand to,
    /// not a doubling per member (the decode fuzz target's finding).
    #[test]
    fn many_tiny_members_do_not_double_the_buffer_each() {
        let mut input = Vec::new();
        for _ in 0..5 {
            input.extend(gz(b"{\"a\":1}"));
        }
        for damaged_tail in [false, true] {
            let mut input = input.clone();
            if damaged_tail {
                let n = input.len();
                input[n - 12] ^= 0x55;
            }
            let d = decode(&input, 1 << 20, Vec::new());
            assert!(
                d.buf.capacity() <= 2 * (plausible_size(input.len()) + (64 << 10)) + PADDING,
                "{} bytes for {} bytes of gzip",
                d.buf.capacity(),
                input.len()
            );
        }
    }
}
