//! SPDY/3 header compression: one zlib stream per direction for the
//! whole connection, primed with the dictionary the SPDY/3 draft
//! defines, each header block ending on a sync flush.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Header names the dictionary starts with, each laid down as a 32-bit
/// big-endian length and the name (the draft's section 2.6.10.1).
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// Then common values, as one run of bytes with no lengths.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The SPDY/3 header dictionary (1423 bytes; its Adler-32, the id in a
/// zlib header that uses it, is 0xe3c6a7c2).
pub(crate) fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut d = Vec::with_capacity(1423);
        for word in DICTIONARY_WORDS {
            d.extend_from_slice(&(word.len() as u32).to_be_bytes());
            d.extend_from_slice(word.as_bytes());
        }
        d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        d
    })
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ZlibError {
    #[error("header block does not decompress: {0}")]
    Corrupt(String),
    #[error("header block wants zlib dictionary {0:#010x}, not SPDY/3's")]
    WrongDictionary(u32),
    #[error("header block decompresses to more than {0} bytes")]
    TooLarge(usize),
    #[error("header compression failed: {0}")]
    Compress(String),
}

/// The sending side's compressor.
pub(crate) struct HeaderCompressor {
    z: Compress,
}

impl HeaderCompressor {
    pub(crate) fn new() -> Result<Self, ZlibError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(dictionary())
            .map_err(|e| ZlibError::Compress(e.to_string()))?;
        Ok(HeaderCompressor { z })
    }

    /// Compresses one header block, ending it on a sync flush so the peer
    /// can decode it without the next one.
    pub(crate) fn compress(&mut self, block: &[u8]) -> Result<Vec<u8>, ZlibError> {
        let mut out = Vec::with_capacity(block.len() / 2 + 64);
        let start_in = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start_in) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            self.z
                .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| ZlibError::Compress(e.to_string()))?;
            let consumed = (self.z.total_in() - start_in) as usize;
            // Done once all input is in and the flush did not fill the
            // buffer (a full buffer may mean more output is pending).
            if consumed == block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The receiving side's decompressor.
pub(crate) struct HeaderDecompressor {
    z: Decompress,
}

impl HeaderDecompressor {
    pub(crate) fn new() -> Self {
        HeaderDecompressor {
            z: Decompress::new(true),
        }
    }

    /// Decompresses one header block (all of `input`), refusing to produce
    /// more than `limit` bytes.
    pub(crate) fn decompress(&mut self, input: &[u8], limit: usize) -> Result<Vec<u8>, ZlibError> {
        let mut out: Vec<u8> =
            Vec::with_capacity(input.len().saturating_mul(4).clamp(64, limit + 1));
        let start_in = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start_in) as usize;
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(ZlibError::TooLarge(limit));
                }
                out.reserve((out.capacity()).min(limit + 1 - out.len()).max(64));
            }
            let before = out.len();
            match self
                .z
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => {
                    // SPDY never ends its zlib stream; a peer that does
                    // could not send another header block.
                    return Err(ZlibError::Corrupt("the zlib stream ended".into()));
                }
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(id) => {
                        let ours = self
                            .z
                            .set_dictionary(dictionary())
                            .map_err(|e| ZlibError::Corrupt(e.to_string()))?;
                        if ours != id {
                            return Err(ZlibError::WrongDictionary(id));
                        }
                        continue;
                    }
                    None => return Err(ZlibError::Corrupt(e.to_string())),
                },
            }
            if out.len() > limit {
                return Err(ZlibError::TooLarge(limit));
            }
            let consumed = (self.z.total_in() - start_in) as usize;
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if consumed == input.len() && out.len() == before {
                // No progress and nothing left to feed: the block was cut.
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn dictionary_is_spdy3s() {
        assert_eq!(dictionary().len(), 1423);
        assert_eq!(adler32(dictionary()), 0xe3c6a7c2);
    }

    #[test]
    fn blocks_round_trip_on_one_stream_each_way() {
        let mut c = HeaderCompressor::new().unwrap();
        let mut d = HeaderDecompressor::new();
        let blocks: Vec<Vec<u8>> = vec![
            b"\0\0\0\x01\0\0\0\x0astreamtype\0\0\0\x05stdin".to_vec(),
            vec![0, 0, 0, 0],
            (0..5000u32).flat_map(|i| i.to_be_bytes()).collect(),
            b"\0\0\0\x01\0\0\0\x0astreamtype\0\0\0\x06stdout".to_vec(),
        ];
        for block in &blocks {
            let z = c.compress(block).unwrap();
            // A sync flush ends on an empty stored block.
            assert!(z.ends_with(&[0, 0, 0xff, 0xff]), "{z:x?}");
            assert_eq!(&d.decompress(&z, 1 << 20).unwrap(), block);
        }
    }

    #[test]
    fn the_first_block_names_the_spdy_dictionary() {
        let mut c = HeaderCompressor::new().unwrap();
        let z = c.compress(b"\0\0\0\0").unwrap();
        // FDICT set in the zlib header, then the dictionary's id.
        assert_eq!(z[1] & 0x20, 0x20);
        assert_eq!(u32::from_be_bytes(z[2..6].try_into().unwrap()), 0xe3c6a7c2);
    }

    #[test]
    fn a_bomb_is_cut_off() {
        let mut c = HeaderCompressor::new().unwrap();
        let z = c.compress(&vec![b'a'; 1 << 20]).unwrap();
        assert!(z.len() < 8192);
        let mut d = HeaderDecompressor::new();
        assert!(matches!(
            d.decompress(&z, 64 << 10),
            Err(ZlibError::TooLarge(_))
        ));
    }

    #[test]
    fn garbage_is_an_error() {
        let mut d = HeaderDecompressor::new();
        assert!(d.decompress(b"\x12\x34garbage", 1024).is_err());
    }

    #[test]
    fn a_stream_without_a_dictionary_is_read_too() {
        // zlib without FDICT is valid SPDY: the dictionary is only an aid.
        let mut z = Compress::new(Compression::default(), true);
        let mut out = Vec::with_capacity(128);
        z.compress_vec(b"\0\0\0\0", &mut out, FlushCompress::Sync)
            .unwrap();
        let mut d = HeaderDecompressor::new();
        assert_eq!(d.decompress(&out, 1024).unwrap(), b"\0\0\0\0");
    }
}
