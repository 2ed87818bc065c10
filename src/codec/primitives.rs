//! The byte primitives every stored format is built from: the bincode options (fixed-width
//! little-endian integers, a size limit, trailing bytes rejected), fixed-size arrays as
//! little-endian words, networks on the wire, and the version and magic every value starts
//! with. It knows no format of its own and never decides what a value means.

use bincode::Options;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::model::error::Error;

pub(crate) fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(limit)
        .reject_trailing_bytes()
}

/// [`options`] without a size limit, for a writer that bounds what it writes itself:
/// bincode checks a limit by computing the whole value's size before it writes a byte,
/// which for a snapshot would encode everything twice.
pub(crate) fn options_unbounded() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
}

// Fixed-size byte arrays go on the wire as little-endian words: the same bytes as
// `[u8; N]`, decoded in 4 steps instead of 32 (bincode reads arrays element by element).
macro_rules! le_words {
    ($name:ident, $n:literal, $word:ty, $count:literal) => {
        pub(crate) mod $name {
            use serde::{Deserialize, Deserializer, Serialize, Serializer};

            const W: usize = std::mem::size_of::<$word>();

            pub(crate) fn serialize<S: Serializer>(bytes: &[u8; $n], s: S) -> Result<S::Ok, S::Error> {
                let mut words = [0 as $word; $count];
                for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(W)) {
                    let mut b = [0u8; W];
                    b.copy_from_slice(chunk);
                    *word = <$word>::from_le_bytes(b);
                }
                words.serialize(s)
            }

            pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; $n], D::Error> {
                let words = <[$word; $count]>::deserialize(d)?;
                let mut bytes = [0u8; $n];
                for (chunk, word) in bytes.chunks_exact_mut(W).zip(words) {
                    chunk.copy_from_slice(&word.to_le_bytes());
                }
                Ok(bytes)
            }
        }
    };
}

le_words!(le32, 32, u64, 4);
le_words!(le16, 16, u128, 1);
le_words!(le4, 4, u32, 1);

#[derive(Serialize, Deserialize, Clone, Copy)]
pub(crate) enum NetV1 {
    V4(#[serde(with = "le4")] [u8; 4], u8),
    V6(#[serde(with = "le16")] [u8; 16], u8),
}

impl From<&IpNet> for NetV1 {
    fn from(net: &IpNet) -> Self {
        match net {
            IpNet::V4(n) => NetV1::V4(n.addr().octets(), n.prefix_len()),
            IpNet::V6(n) => NetV1::V6(n.addr().octets(), n.prefix_len()),
        }
    }
}

impl TryFrom<NetV1> for IpNet {
    type Error = String;

    fn try_from(net: NetV1) -> Result<Self, String> {
        match net {
            NetV1::V4(a, p) => Ipv4Net::new(a.into(), p).map(IpNet::V4),
            NetV1::V6(a, p) => Ipv6Net::new(a.into(), p).map(IpNet::V6),
        }
        .map_err(|e| e.to_string())
    }
}

/// The little-endian `u16` every versioned value starts with.
pub(crate) fn version_of(bytes: &[u8]) -> Option<u16> {
    bytes.first_chunk::<2>().map(|v| u16::from_le_bytes(*v))
}

/// `body` with its blake3 checksum appended: the frame of the files kept beside the log
/// (last-used, credits), which are not in the chain and prove nothing; the checksum finds
/// damage.
pub(crate) fn with_checksum(mut body: Vec<u8>) -> Vec<u8> {
    let sum = *blake3::hash(&body).as_bytes();
    body.extend_from_slice(&sum);
    body
}

/// The body of a file framed by [`with_checksum`], or what is wrong with it.
pub(crate) fn checksummed_body(bytes: &[u8]) -> Result<&[u8], &'static str> {
    let body_len = bytes.len().checked_sub(32).ok_or("too short")?;
    let (body, sum) = bytes.split_at(body_len);
    if blake3::hash(body).as_bytes() != sum {
        return Err("checksum does not match");
    }
    Ok(body)
}

/// The version after `magic` at the start of `bytes`: `None` if `magic` is not there; a
/// version outside `versions` is [`Error::UnsupportedVersion`].
pub(crate) fn magic_version(
    bytes: &[u8],
    magic: &[u8; 8],
    versions: std::ops::RangeInclusive<u16>,
) -> Result<Option<u16>, Error> {
    let Some((head, _)) = bytes.split_first_chunk::<10>() else {
        return Ok(None);
    };
    if head[..8] != magic[..] {
        return Ok(None);
    }
    match u16::from_le_bytes([head[8], head[9]]) {
        v if versions.contains(&v) => Ok(Some(v)),
        found => Err(Error::UnsupportedVersion {
            found: u32::from(found),
            supported: u32::from(*versions.end()),
        }),
    }
}
