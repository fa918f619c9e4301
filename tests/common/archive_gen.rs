//! A seeded generator of archive structures for the differential test (`tests/differential.rs`):
//! zip, gzip and tar nested in any order and depth (beyond clamd's `MaxRecursion` too), built byte
//! by byte with the tricks that make archive parsers disagree, and the project's test signature
//! at the deepest point.
//!
//! A structure is an [`Object`]: it prints as one short line (`Display`; `{:#}` prints its
//! [`Object::kind`], sizes and lengths coarsened), builds its bytes deterministically
//! ([`Object::bytes`]: the seed only chooses the structure), and offers simpler variants of itself
//! ([`Object::simpler`]) so that a failure can be shrunk to a minimal repro.
//!
//! What the generator varies (the notation in brackets is how a structure prints):
//! - zip members [`m8`…]: stored, deflated, deflate64 and implode (our own encoders), bzip2 (the
//!   `bzip2` tool, when installed), unreadable bytes under other methods (`m14`, `m93`, `m99`…:
//!   LZMA, zstd, AES… with data no one can decode), a deflate stream that breaks after the
//!   content (`m8=broken`), and a method field that does not match the data (`m0=deflate`);
//! - data descriptors [`dd`, `dd+sig`] (bit 3, local sizes and crc zero), the encryption flag
//!   [`enc`], "version needed" values [`v64`], names and extra fields up to 64 KiB [`n65535`,
//!   `x65535`], lying sizes [`u<` `u>` `u0` `c<` `c>` `c0`], zip64-style 0xFFFFFFFF sizes with
//!   or without the zip64 extra field [`u64` `uMAX`], no central directory [`zip-cd`] or one
//!   that tells the truth where the local headers lie [`zip+cd`], and several members with
//!   decoys [`decoy(F)`];
//! - gzip [`gz{…}`]: FNAME, FEXTRA and FCOMMENT up to and past 64 KiB, FHCRC, stored deflate
//!   blocks, a stream that breaks after the content, a decoy member before, garbage or a decoy
//!   member after, a lying ISIZE;
//! - tar [`tar{…}`]: ustar, GNU and v7 headers, GNU long names, type flags other than a regular
//!   file [`t5`], base-256 and lying size fields, bad checksums, no end blocks, decoy members;
//! - bytes around an archive [`junk(100)+…+zip`]: junk, text, decoy zip/gzip/tar before or after
//!   (an embedded archive, zip + zip concatenation);
//! - the signature [`M`, `z(F-35)M`, `Mz(F)`, `EICAR`]: the `.ndb` test marker after and before
//!   runs of zeros whose sizes sit just under, at and over clamd's `MaxFileSize` (`F`) and
//!   `MaxScanSize` (`4F`) — zeros deflate ~1000:1, so the objects stay small on the wire — or
//!   EICAR, which clamd matches only as a whole file;
//! - the chunks the body arrives in [`chunks 4093`].
//!
//! One object in ten is plain (every layer honest: only the kinds of layers, their depth and the
//! sizes vary), so that what those cause shows alone too. EICAR is kept a whole file wherever it
//! sits (see [`Node::keep_eicar_whole`]): otherwise there would be no signature to miss.
//! The kind of a structure (`{:#}`) prints the marker by where it sits against clamd's cut
//! (`M`, `M≤F`, `M…>F`, `…M>F`), methods clamd does not decode as `m?`, and data that is not
//! what its method says as `=other`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::Write;

use super::{EICAR, TEST_MARKER};

/// clamd's `MaxFileSize` in the differential test; the generator's sizes are relative to it.
pub const MAX_FILE_SIZE: usize = 1 << 20;
/// clamd's `MaxScanSize` in the differential test.
pub const MAX_SCAN_SIZE: usize = 4 * MAX_FILE_SIZE;
/// clamd's `MaxRecursion` in the differential test (clamd's default).
pub const MAX_RECURSION: usize = 17;

const MARKER_LEN: i32 = TEST_MARKER.len() as i32;

/// Content this big is kept out of raw layers (stored members, tar, stored gzip) most of the
/// time, so that objects stay small on the wire.
const BIG: usize = 256 * 1024;

/// splitmix64: small, fast, and the same everywhere, so a seed means one structure forever.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    fn range(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn weighted<T: Copy>(&mut self, items: &[(usize, T)]) -> T {
        let total: usize = items.iter().map(|(weight, _)| weight).sum();
        let mut at = self.below(total);
        for &(weight, item) in items {
            if at < weight {
                return item;
            }
            at -= weight;
        }
        unreachable!("weights add up")
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of the `index`th object of a run with seed `base`: each object can be replayed alone.
pub fn object_seed(base: u64, index: u64) -> u64 {
    mix(base ^ mix(index.wrapping_add(0x5eed)))
}

/// A length relative to clamd's limits: `files × MaxFileSize + delta`, printed as `F-35`, `2F`, `100`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Size {
    pub files: u8,
    pub delta: i32,
}

impl Size {
    pub const ZERO: Size = Size { files: 0, delta: 0 };

    pub const fn bytes(delta: i32) -> Size {
        Size { files: 0, delta }
    }

    pub const fn files(files: u8, delta: i32) -> Size {
        Size { files, delta }
    }

    pub fn len(self) -> usize {
        (i64::from(self.files) * MAX_FILE_SIZE as i64 + i64::from(self.delta)).max(0) as usize
    }

    pub fn is_zero(self) -> bool {
        self.len() == 0
    }

    /// `0`, small, up to F, over F, at or over the scan size.
    fn coarse(self) -> &'static str {
        match self.len() {
            0 => "0",
            n if n < MAX_FILE_SIZE / 2 => "s",
            n if n <= MAX_FILE_SIZE => "≤F",
            n if n < MAX_SCAN_SIZE => ">F",
            _ => "≥4F",
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return f.write_str(self.coarse());
        }
        match self.files {
            0 => return write!(f, "{}", self.delta),
            1 => f.write_str("F")?,
            n => write!(f, "{n}F")?,
        }
        if self.delta != 0 {
            write!(f, "{:+}", self.delta)?;
        }
        Ok(())
    }
}

/// One generated object: its structure and the chunks its body arrives in.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub root: Node,
    /// Bytes per body chunk; 0 for the whole body as one chunk.
    pub chunk: usize,
}

/// A layer of the structure; exactly one path leads from the root to the signature.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// `before` zero bytes, the test marker, `after` zero bytes.
    Marker {
        before: Size,
        after: Size,
    },
    /// The EICAR file, matched by clamd only as a whole file.
    Eicar,
    Zip(Zip),
    Gzip(Gzip),
    Tar(Tar),
    /// An archive among other bytes: clamd must find it by its magic.
    Embedded {
        before: Vec<Filler>,
        inner: Box<Node>,
        after: Vec<Filler>,
    },
}

/// What a member holds: the path to the signature, or clean filler.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    Path(Box<Node>),
    /// "decoy" then zeros, `size` bytes in all.
    Decoy(Size),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Zip {
    pub members: Vec<Member>,
    pub central: Central,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Central {
    /// The central directory repeats the local headers (their lies included).
    Same,
    /// The central directory has the true sizes, whatever the local headers say.
    True,
    /// No central directory and no end record.
    Missing,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub content: Content,
    /// How the data is really encoded.
    pub encoding: Encoding,
    /// The method field, usually the one of `encoding`.
    pub method: u16,
    pub version: u16,
    pub name_len: usize,
    pub extra_len: usize,
    pub descriptor: Descriptor,
    pub encrypted: bool,
    pub usize: Declared,
    pub csize: Declared,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Stored,
    Deflate,
    /// Fixed-Huffman deflate without length 258: valid deflate and deflate64 alike.
    Deflate64,
    /// PKWARE implode, two trees, 4 KiB window.
    Implode,
    Bzip2,
    /// The data XORed with 0xa5: what no one can decode (LZMA, zstd, AES… without the real codec).
    Xor,
    /// A deflate stream flushed after the content, then an invalid block.
    Broken,
}

impl Encoding {
    fn default_method(self) -> u16 {
        match self {
            Encoding::Stored => 0,
            Encoding::Deflate | Encoding::Broken => 8,
            Encoding::Deflate64 => 9,
            Encoding::Implode => 6,
            Encoding::Bzip2 => 12,
            Encoding::Xor => 99,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::Stored => "stored",
            Encoding::Deflate => "deflate",
            Encoding::Deflate64 => "deflate64",
            Encoding::Implode => "implode",
            Encoding::Bzip2 => "bzip2",
            Encoding::Xor => "xor",
            Encoding::Broken => "broken",
        }
    }

    /// The encoding a method field suggests when printing: `m14=xor` needs no `=` for xor.
    fn natural_for(method: u16) -> Encoding {
        match method {
            0 => Encoding::Stored,
            8 => Encoding::Deflate,
            9 => Encoding::Deflate64,
            6 => Encoding::Implode,
            12 => Encoding::Bzip2,
            _ => Encoding::Xor,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Descriptor {
    None,
    Plain,
    Signed,
}

/// A size field: the truth or a lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Declared {
    True,
    Less,
    More,
    Zero,
    /// 0xFFFFFFFF without a zip64 extra field.
    Max,
    /// 0xFFFFFFFF with the true size in a zip64 extra field.
    Zip64,
    Is(Size),
}

impl Declared {
    fn value(self, real: usize) -> u32 {
        match self {
            Declared::True => real as u32,
            Declared::Less => (real / 2) as u32,
            Declared::More => (real + real / 4 + 64) as u32,
            Declared::Zero => 0,
            Declared::Max | Declared::Zip64 => u32::MAX,
            Declared::Is(size) => size.len() as u32,
        }
    }

    fn describe(self, field: char, out: &mut dyn fmt::Write, coarse: bool) -> fmt::Result {
        match self {
            Declared::True => Ok(()),
            Declared::Less => write!(out, " {field}<"),
            Declared::More => write!(out, " {field}>"),
            Declared::Zero => write!(out, " {field}0"),
            Declared::Max => write!(out, " {field}MAX"),
            Declared::Zip64 => write!(out, " {field}64"),
            Declared::Is(size) if coarse => write!(out, " {field}={size:#}"),
            Declared::Is(size) => write!(out, " {field}={size}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Gzip {
    pub inner: Box<Node>,
    /// FNAME length; 0 for none.
    pub name: usize,
    /// FEXTRA length; `None` for no FEXTRA.
    pub extra: Option<usize>,
    /// FCOMMENT length; 0 for none.
    pub comment: usize,
    pub hcrc: bool,
    /// Deflate's stored blocks: the content is visible as is.
    pub stored: bool,
    /// Flushed after the content, then an invalid block.
    pub broken: bool,
    /// A decoy gzip member before this one (a multi-member gzip).
    pub decoy_before: bool,
    pub trailing: Trailing,
    pub isize_lie: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trailing {
    None,
    Garbage,
    DecoyMember,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tar {
    pub members: Vec<TarMember>,
    pub format: TarFormat,
    /// The two zero blocks at the end.
    pub end: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TarFormat {
    Ustar,
    Gnu,
    V7,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TarMember {
    pub content: Content,
    /// Over 100: a GNU long-name entry first, the header holds the first 100 bytes.
    pub name_len: usize,
    pub typeflag: u8,
    pub size: TarSize,
    pub bad_checksum: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TarSize {
    Octal,
    Base256,
    Less,
    More,
}

/// Bytes around an embedded archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filler {
    Junk(usize),
    Text(usize),
    DecoyZip,
    DecoyGzip,
    DecoyTar,
}

// ---------------------------------------------------------------------------------------------
// Generation

/// The structure for `seed`.
pub fn generate(seed: u64) -> Object {
    let mut rng = Rng::new(seed);
    let depth = match rng.weighted(&[(40, 0), (25, 1), (20, 2), (15, 3)]) {
        0 => rng.range(1, 3),
        1 => rng.range(4, 8),
        2 => rng.range(9, 12),
        _ => rng.range(13, MAX_RECURSION + 5),
    };
    let plain = rng.percent(10);
    let mut root = node(&mut rng, depth);
    if plain {
        // Honest layers, so that what only the kinds of layers, their depth and the sizes cause
        // also shows alone, not always next to a trick that fails by itself.
        root.make_plain();
    }
    root.keep_eicar_whole();
    let chunk = rng.weighted(&[
        (30, 0),
        (20, 65536),
        (10, 4096),
        (10, 4093),
        (5, 1021),
        (2, 7),
        (3, 17),
        (20, usize::MAX),
    ]);
    let chunk = if chunk == usize::MAX {
        rng.range(100, 70_000)
    } else {
        chunk
    };
    Object { root, chunk }
}

fn node(rng: &mut Rng, depth: usize) -> Node {
    if depth == 0 {
        return leaf(rng);
    }
    let inner = node(rng, depth - 1);
    let mut kind = rng.weighted(&[(55, 0), (25, 1), (20, 2)]);
    if kind == 2 && inner.approx_len() > BIG && rng.percent(85) {
        // A tar of a big content is as big on the wire: keep those rare.
        kind = 0;
    }
    let layer = match kind {
        0 => Node::Zip(zip(rng, inner)),
        1 => Node::Gzip(gzip(rng, inner)),
        _ => Node::Tar(tar(rng, inner)),
    };
    if rng.percent(10) {
        embedded(rng, layer)
    } else {
        layer
    }
}

fn leaf(rng: &mut Rng) -> Node {
    if rng.percent(8) {
        return Node::Eicar;
    }
    let f = |delta| Size::files(1, delta);
    let before = match rng.weighted(&[(45, 0), (10, 1), (8, 2), (8, 3), (8, 4), (6, 5), (5, 6), (5, 7), (5, 8)]) {
        0 => Size::ZERO,
        1 => Size::bytes(rng.range(1, 4000) as i32),
        2 => f(-MARKER_LEN), // the marker ends exactly at MaxFileSize
        3 => f(-MARKER_LEN + 1),
        4 => f(0),
        5 => f(1),
        6 => f(-(rng.range(36, 9000) as i32)),
        7 => Size::files(2, 0),
        _ => Size::files(4, 0),
    };
    let after = match rng.weighted(&[(75, 0), (10, 1), (10, 2), (5, 3)]) {
        0 => Size::ZERO,
        1 => f(0),
        2 => Size::bytes(rng.range(1, 4000) as i32),
        _ => f(1),
    };
    Node::Marker { before, after }
}

fn decoy_size(rng: &mut Rng, stored: bool) -> Size {
    if stored && rng.percent(85) {
        return Size::bytes(rng.range(10, 2000) as i32);
    }
    rng.weighted(&[
        (40, Size::bytes(100)),
        (20, Size::files(1, -100)),
        (15, Size::files(1, 0)),
        (15, Size::files(1, 1)),
        (10, Size::files(2, 0)),
    ])
}

fn zip(rng: &mut Rng, inner: Node) -> Zip {
    let count = if rng.percent(65) { 1 } else { rng.range(2, 4) };
    let path_at = rng.below(count);
    let mut inner = Some(inner);
    let members = (0..count)
        .map(|i| {
            let mut encoding = encoding(rng);
            let content = if i == path_at {
                Content::Path(Box::new(inner.take().expect("one path")))
            } else {
                Content::Decoy(decoy_size(rng, matches!(encoding, Encoding::Stored | Encoding::Xor)))
            };
            if matches!(encoding, Encoding::Stored | Encoding::Xor) && content.approx_len() > BIG && rng.percent(85) {
                encoding = Encoding::Deflate;
            }
            member(rng, content, encoding)
        })
        .collect();
    let central = rng.weighted(&[(85, Central::Same), (8, Central::True), (7, Central::Missing)]);
    Zip { members, central }
}

fn encoding(rng: &mut Rng) -> Encoding {
    rng.weighted(&[
        (55, Encoding::Deflate),
        (18, Encoding::Stored),
        (5, Encoding::Deflate64),
        (5, Encoding::Implode),
        (5, Encoding::Bzip2),
        (7, Encoding::Xor),
        (5, Encoding::Broken),
    ])
}

fn member(rng: &mut Rng, content: Content, encoding: Encoding) -> Member {
    let method = if encoding == Encoding::Xor {
        rng.pick(&[1, 7, 10, 14, 19, 93, 94, 95, 96, 97, 98, 99, 0x1234])
    } else if rng.percent(8) {
        rng.pick(&[0, 6, 8, 9, 12, 14, 99])
    } else {
        encoding.default_method()
    };
    let version = if rng.percent(85) {
        20
    } else {
        rng.pick(&[0, 10, 45, 63, 64, 100, 255, 0xffff])
    };
    let name_len = match rng.weighted(&[(70, 0), (10, 1), (10, 2), (10, 3)]) {
        0 => rng.range(1, 20),
        1 => 0,
        2 => rng.range(256, 4096),
        _ => rng.pick(&[40_000, 65_534, 65_535]),
    };
    let extra_len = match rng.weighted(&[(75, 0), (10, 1), (15, 2)]) {
        0 => 0,
        1 => rng.range(4, 64),
        _ => rng.pick(&[40_000, 65_531, 65_535]),
    };
    let descriptor = rng.weighted(&[
        (80, Descriptor::None),
        (10, Descriptor::Plain),
        (10, Descriptor::Signed),
    ]);
    let usize = rng.weighted(&[
        (80, Declared::True),
        (5, Declared::Less),
        (4, Declared::More),
        (3, Declared::Zero),
        (3, Declared::Max),
        (3, Declared::Zip64),
        (1, Declared::Is(Size::files(1, 0))),
        (1, Declared::Is(Size::files(1, 1))),
    ]);
    let csize = rng.weighted(&[
        (85, Declared::True),
        (5, Declared::Less),
        (4, Declared::More),
        (2, Declared::Zero),
        (2, Declared::Max),
        (2, Declared::Zip64),
    ]);
    Member {
        content,
        encoding,
        method,
        version,
        name_len,
        extra_len,
        descriptor,
        encrypted: rng.percent(5),
        usize,
        csize,
    }
}

fn gzip(rng: &mut Rng, inner: Node) -> Gzip {
    let big = inner.approx_len() > BIG;
    let name = if rng.percent(75) {
        0
    } else {
        let short = rng.range(1, 20);
        rng.pick(&[short, 300, 65_535, 70_000])
    };
    let extra = if rng.percent(80) {
        None
    } else {
        Some(rng.pick(&[0, 10, 65_535]))
    };
    let comment = if rng.percent(90) { 0 } else { rng.pick(&[10, 70_000]) };
    Gzip {
        inner: Box::new(inner),
        name,
        extra,
        comment,
        hcrc: rng.percent(8),
        stored: rng.percent(if big { 1 } else { 8 }),
        broken: rng.percent(4),
        decoy_before: rng.percent(5),
        trailing: rng.weighted(&[(88, Trailing::None), (6, Trailing::Garbage), (6, Trailing::DecoyMember)]),
        isize_lie: rng.percent(5),
    }
}

fn tar(rng: &mut Rng, inner: Node) -> Tar {
    let count = if rng.percent(70) { 1 } else { rng.range(2, 3) };
    let path_at = rng.below(count);
    let mut inner = Some(inner);
    let members = (0..count)
        .map(|i| {
            let content = if i == path_at {
                Content::Path(Box::new(inner.take().expect("one path")))
            } else {
                Content::Decoy(decoy_size(rng, true))
            };
            let name_len = match rng.weighted(&[(80, 0), (10, 1), (10, 2)]) {
                0 => rng.range(1, 50),
                1 => 100,
                _ => rng.pick(&[101, 300, 5000, 65_535]),
            };
            let typeflag = if rng.percent(80) {
                b'0'
            } else {
                rng.pick(&[0, b'7', b'5', b'1', b'2', b'x', b'g', b'L', b'K', b'V', b'Z'])
            };
            let size = rng.weighted(&[
                (90, TarSize::Octal),
                (4, TarSize::Base256),
                (3, TarSize::Less),
                (3, TarSize::More),
            ]);
            TarMember {
                content,
                name_len,
                typeflag,
                size,
                bad_checksum: rng.percent(3),
            }
        })
        .collect();
    Tar {
        members,
        format: rng.weighted(&[(75, TarFormat::Ustar), (15, TarFormat::Gnu), (10, TarFormat::V7)]),
        end: rng.percent(90),
    }
}

fn embedded(rng: &mut Rng, inner: Node) -> Node {
    let filler = |rng: &mut Rng| {
        let some = rng.range(1, 3000);
        let junk = rng.weighted(&[
            (20, 1),
            (15, 7),
            (20, 100),
            (15, 1000),
            (10, 4096),
            (5, 70_000),
            (15, some),
        ]);
        rng.weighted(&[
            (50, Filler::Junk(junk)),
            (15, Filler::Text(some)),
            (15, Filler::DecoyZip),
            (10, Filler::DecoyGzip),
            (10, Filler::DecoyTar),
        ])
    };
    let (mut before, mut after) = (Vec::new(), Vec::new());
    while before.is_empty() && after.is_empty() {
        for _ in 0..rng.weighted(&[(30, 0), (55, 1), (15, 2)]) {
            before.push(filler(rng));
        }
        for _ in 0..rng.weighted(&[(70, 0), (25, 1), (5, 2)]) {
            after.push(filler(rng));
        }
    }
    Node::Embedded {
        before,
        inner: Box::new(inner),
        after,
    }
}

// ---------------------------------------------------------------------------------------------
// Printing

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return self.root.describe(f, true);
        }
        if self.chunk != 0 {
            write!(f, "[chunks {}] ", self.chunk)?;
        }
        self.root.describe(f, false)
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let coarse = f.alternate();
        self.describe(f, coarse)
    }
}

/// A length printed exactly, or coarsely: 0, short, long (past 255), near or at 64 KiB.
fn len_class(len: usize, coarse: bool) -> String {
    if !coarse {
        return len.to_string();
    }
    match len {
        0 => "0".into(),
        1..=255 => "s".into(),
        256..=39_999 => "long".into(),
        _ => "max".into(),
    }
}

impl Node {
    fn describe(&self, out: &mut dyn fmt::Write, coarse: bool) -> fmt::Result {
        match self {
            Node::Marker { before, after } if coarse => out.write_str(marker_class(*before, *after)),
            Node::Marker { before, after } => {
                if !before.is_zero() {
                    write_size(out, "z(", *before, ")", coarse)?;
                }
                out.write_str("M")?;
                if !after.is_zero() {
                    write_size(out, "z(", *after, ")", coarse)?;
                }
                Ok(())
            }
            Node::Eicar => out.write_str("EICAR"),
            Node::Zip(zip) => {
                out.write_str(match zip.central {
                    Central::Same => "zip[",
                    Central::True => "zip+cd[",
                    Central::Missing => "zip-cd[",
                })?;
                for (i, member) in zip.members.iter().enumerate() {
                    if i > 0 {
                        out.write_str("; ")?;
                    }
                    member.describe(out, coarse)?;
                }
                out.write_str("]")
            }
            Node::Gzip(gzip) => {
                let mut options = Vec::new();
                if gzip.name > 0 {
                    options.push(format!("name{}", len_class(gzip.name, coarse)));
                }
                if let Some(extra) = gzip.extra {
                    options.push(format!("extra{}", len_class(extra, coarse)));
                }
                if gzip.comment > 0 {
                    options.push(format!("comment{}", len_class(gzip.comment, coarse)));
                }
                for (on, name) in [
                    (gzip.hcrc, "hcrc"),
                    (gzip.stored, "stored"),
                    (gzip.broken, "broken"),
                    (gzip.decoy_before, "decoy+"),
                    (gzip.trailing == Trailing::Garbage, "+garbage"),
                    (gzip.trailing == Trailing::DecoyMember, "+decoy"),
                    (gzip.isize_lie, "isize<"),
                ] {
                    if on {
                        options.push(name.into());
                    }
                }
                out.write_str("gz")?;
                if !options.is_empty() {
                    write!(out, "{{{}}}", options.join(" "))?;
                }
                out.write_str("(")?;
                gzip.inner.describe(out, coarse)?;
                out.write_str(")")
            }
            Node::Tar(tar) => {
                out.write_str("tar")?;
                let mut options = Vec::new();
                match tar.format {
                    TarFormat::Ustar => {}
                    TarFormat::Gnu => options.push("gnu"),
                    TarFormat::V7 => options.push("v7"),
                }
                if !tar.end {
                    options.push("noend");
                }
                if !options.is_empty() {
                    write!(out, "{{{}}}", options.join(" "))?;
                }
                out.write_str("[")?;
                for (i, member) in tar.members.iter().enumerate() {
                    if i > 0 {
                        out.write_str("; ")?;
                    }
                    let mut attributes = Vec::new();
                    if member.typeflag != b'0' {
                        attributes.push(match member.typeflag {
                            0 => "t\\0".to_string(),
                            flag => format!("t{}", flag as char),
                        });
                    }
                    if member.name_len > 100 {
                        attributes.push(format!("n{}", len_class(member.name_len, coarse)));
                    }
                    match member.size {
                        TarSize::Octal => {}
                        TarSize::Base256 => attributes.push("b256".into()),
                        TarSize::Less => attributes.push("s<".into()),
                        TarSize::More => attributes.push("s>".into()),
                    }
                    if member.bad_checksum {
                        attributes.push("badsum".into());
                    }
                    if !attributes.is_empty() {
                        write!(out, "{}: ", attributes.join(" "))?;
                    }
                    member.content.describe(out, coarse)?;
                }
                out.write_str("]")
            }
            Node::Embedded { before, inner, after } => {
                for filler in before {
                    filler.describe(out, coarse)?;
                    out.write_str("+")?;
                }
                inner.describe(out, coarse)?;
                for filler in after {
                    out.write_str("+")?;
                    filler.describe(out, coarse)?;
                }
                Ok(())
            }
        }
    }
}

/// Where the marker sits against clamd's cut at `MaxFileSize`, which is what clamd's handling
/// depends on: `M` (all within half of F), `M≤F` (up to F), `M…>F` (the marker within F, the
/// content past it), `…M>F` (the marker past F).
fn marker_class(before: Size, after: Size) -> &'static str {
    let end = before.len() + TEST_MARKER.len();
    let total = end + after.len();
    if end > MAX_FILE_SIZE {
        "…M>F"
    } else if total > MAX_FILE_SIZE {
        "M…>F"
    } else if total > MAX_FILE_SIZE / 2 {
        "M≤F"
    } else {
        "M"
    }
}

fn write_size(out: &mut dyn fmt::Write, open: &str, size: Size, close: &str, coarse: bool) -> fmt::Result {
    if coarse {
        write!(out, "{open}{size:#}{close}")
    } else {
        write!(out, "{open}{size}{close}")
    }
}

impl Content {
    fn describe(&self, out: &mut dyn fmt::Write, coarse: bool) -> fmt::Result {
        match self {
            Content::Path(node) => node.describe(out, coarse),
            Content::Decoy(size) => write_size(out, "decoy(", *size, ")", coarse),
        }
    }
}

impl Member {
    fn describe(&self, out: &mut dyn fmt::Write, coarse: bool) -> fmt::Result {
        match self.method {
            0 | 6 | 8 | 9 | 12 => write!(out, "m{}", self.method)?,
            // Methods clamd does not decode, all alike.
            _ if coarse => out.write_str("m?")?,
            _ => write!(out, "m{}", self.method)?,
        }
        if Encoding::natural_for(self.method) != self.encoding {
            // Data that is not what the method says, all alike.
            if coarse {
                out.write_str("=other")?;
            } else {
                write!(out, "={}", self.encoding.name())?;
            }
        }
        if self.version != 20 {
            write!(out, " v{}", self.version)?;
        }
        // Exactly, past the generator's usual 1..=20 bytes (length decides whether a layer
        // compresses); coarsely, only the empty and the long ones.
        if self.name_len == 0 || self.name_len > if coarse { 255 } else { 20 } {
            write!(out, " n{}", len_class(self.name_len, coarse))?;
        }
        if self.extra_len > 0 {
            write!(out, " x{}", len_class(self.extra_len, coarse))?;
        }
        match self.descriptor {
            Descriptor::None => {}
            Descriptor::Plain => out.write_str(" dd")?,
            Descriptor::Signed => out.write_str(" dd+sig")?,
        }
        if self.encrypted {
            out.write_str(" enc")?;
        }
        self.usize.describe('u', out, coarse)?;
        self.csize.describe('c', out, coarse)?;
        out.write_str(": ")?;
        self.content.describe(out, coarse)
    }
}

impl Filler {
    fn describe(&self, out: &mut dyn fmt::Write, coarse: bool) -> fmt::Result {
        match self {
            Filler::Junk(len) if coarse => write!(out, "junk({})", len_class(*len, true)),
            Filler::Junk(len) => write!(out, "junk({len})"),
            Filler::Text(_) => out.write_str("text"),
            Filler::DecoyZip => out.write_str("zip"),
            Filler::DecoyGzip => out.write_str("gz"),
            Filler::DecoyTar => out.write_str("tar"),
        }
    }
}

impl Object {
    /// The structure with sizes and lengths coarsened: what failures are grouped by.
    pub fn kind(&self) -> String {
        format!("{self:#}")
    }

    /// Notable traits of the structure (containers, attributes other than the plain ones, size
    /// classes, nesting depths), for telling whether a failure contains a known failing kind.
    pub fn traits(&self) -> BTreeSet<String> {
        let mut traits = BTreeSet::new();
        if self.chunk != 0 {
            traits.insert("chunked".to_string());
        }
        self.root.traits("", &mut traits);
        let (inflating, layers) = self.root.path_depths();
        if inflating > 8 {
            traits.insert("inflating layers>8".into());
        }
        if layers >= MAX_RECURSION {
            traits.insert(format!("layers≥{MAX_RECURSION}"));
        }
        traits
    }

    /// True when the signature sits where no tool finds it without carving bytes out by hand:
    /// on its path, an archive that does not start its layer (it follows other bytes, or a
    /// decoy gzip member) and that nothing opens there — a gzip whose deflate stream breaks, a
    /// zip with no central directory (or one that agrees with the local header that the
    /// member's compressed data is empty), a v7 tar (no magic to find it by); or, anywhere, in the
    /// gap a stored zip member leaves by saying it is shorter than it is (and, in a zip without a
    /// central directory, after such a gap). clamd does not look there and neither does the
    /// guard: README, "Guarantees", what is not covered.
    pub fn needs_carving(&self) -> bool {
        self.root.needs_carving(true)
    }
}

impl Node {
    fn traits(&self, prefix: &str, traits: &mut BTreeSet<String>) {
        let mut add = |name: String| {
            traits.insert(format!("{prefix}{name}"));
        };
        match self {
            Node::Marker { before, after } => {
                let class = marker_class(*before, *after);
                if class != "M" {
                    add(format!("leaf {class}"));
                }
            }
            Node::Eicar => add("EICAR".into()),
            Node::Zip(zip) => {
                add("zip".into());
                match zip.central {
                    Central::Same => {}
                    Central::True => add("zip+cd".into()),
                    Central::Missing => add("zip-cd".into()),
                }
                for member in &zip.members {
                    let mut description = String::new();
                    let mut bare = member.clone();
                    bare.content = Content::Decoy(Size::ZERO);
                    let _ = bare.describe(&mut description, true);
                    let attributes = description.trim_end_matches(": decoy(0)");
                    let inner_prefix = match &member.content {
                        Content::Path(_) => prefix.to_string(),
                        Content::Decoy(_) => format!("{prefix}decoy "),
                    };
                    for attribute in attributes.split(' ') {
                        traits.insert(format!("{inner_prefix}{attribute}"));
                    }
                    if let Content::Path(inner) = &member.content {
                        inner.traits(prefix, traits);
                    }
                }
            }
            Node::Gzip(gzip) => {
                let mut description = String::new();
                let bare = Node::Gzip(Gzip {
                    inner: Box::new(Node::Eicar),
                    ..gzip.clone()
                });
                let _ = bare.describe(&mut description, true);
                add("gz".into());
                if let Some(options) = description.strip_prefix("gz{") {
                    for option in options.trim_end_matches("}(EICAR)").split(' ') {
                        add(format!("gz {option}"));
                    }
                }
                gzip.inner.traits(prefix, traits);
            }
            Node::Tar(tar) => {
                add("tar".into());
                match tar.format {
                    TarFormat::Ustar => {}
                    TarFormat::Gnu => add("tar gnu".into()),
                    TarFormat::V7 => add("tar v7".into()),
                }
                if !tar.end {
                    add("tar noend".into());
                }
                for member in &tar.members {
                    let inner_prefix = match &member.content {
                        Content::Path(_) => prefix.to_string(),
                        Content::Decoy(_) => format!("{prefix}decoy "),
                    };
                    let mut own = |name: String| {
                        traits.insert(format!("{inner_prefix}{name}"));
                    };
                    if member.typeflag != b'0' {
                        own(format!("tar t{}", member.typeflag.escape_ascii()));
                    }
                    if member.name_len > 100 {
                        own("tar longname".into());
                    }
                    if member.size != TarSize::Octal {
                        own(format!("tar {:?}", member.size));
                    }
                    if member.bad_checksum {
                        own("tar badsum".into());
                    }
                    if let Content::Path(inner) = &member.content {
                        inner.traits(prefix, traits);
                    }
                }
            }
            Node::Embedded { before, inner, after } => {
                for filler in before {
                    let mut text = String::new();
                    let _ = filler.describe(&mut text, true);
                    add(format!("{text}+"));
                }
                for filler in after {
                    let mut text = String::new();
                    let _ = filler.describe(&mut text, true);
                    add(format!("+{text}"));
                }
                inner.traits(prefix, traits);
            }
        }
    }

    /// Along the path to the signature: layers the archive guard inflates (deflated zip members
    /// and gzip streams), and layers clamd descends (every container).
    fn path_depths(&self) -> (usize, usize) {
        match self {
            Node::Marker { .. } | Node::Eicar => (0, 0),
            Node::Zip(zip) => {
                let member = zip.path_member();
                let (inflating, layers) = member.content.path().map(Node::path_depths).unwrap_or((0, 0));
                (inflating + usize::from(member.method == 8), layers + 1)
            }
            Node::Gzip(gzip) => {
                let (inflating, layers) = gzip.inner.path_depths();
                (inflating + 1, layers + 1)
            }
            Node::Tar(tar) => {
                let (inflating, layers) = tar
                    .path_member()
                    .content
                    .path()
                    .map(Node::path_depths)
                    .unwrap_or((0, 0));
                (inflating, layers + 1)
            }
            Node::Embedded { inner, .. } => inner.path_depths(),
        }
    }

    /// See [`Object::needs_carving`]; `at_start`: this node starts its layer.
    fn needs_carving(&self, at_start: bool) -> bool {
        if let Node::Embedded { before, inner, .. } = self {
            // A gzip after decoy gzip members from the layer's start: one multi-member stream,
            // which starts the layer, and whose content starts with the decoys'.
            let decoy_members = !before.is_empty() && before.iter().all(|filler| *filler == Filler::DecoyGzip);
            if let (true, true, Node::Gzip(gzip)) = (at_start, decoy_members, &**inner) {
                return gzip.inner.needs_carving(false);
            }
        }
        let hidden_here = !at_start
            && match self {
                Node::Gzip(gzip) => gzip.broken,
                Node::Zip(zip) => {
                    // No central directory, or one that agrees the member has no data.
                    let member = zip.path_member();
                    zip.central == Central::Missing
                        || (zip.central == Central::Same
                            && member.csize == Declared::Zero
                            && member.descriptor == Descriptor::None
                            && member.method != 0)
                }
                Node::Tar(tar) => tar.format == TarFormat::V7,
                Node::Marker { .. } | Node::Eicar | Node::Embedded { .. } => false,
            };
        let child_at_start = match self {
            Node::Gzip(gzip) => !gzip.decoy_before,
            Node::Embedded { before, .. } => at_start && before.is_empty(),
            _ => true,
        };
        // A stored member whose sizes say it is shorter than it is leaves the rest of its data
        // in a gap, where no unzip looks (unless a truthful central directory gives the size);
        // without a central directory, a sequential unzip loses its place there too.
        let in_a_gap = match self {
            Node::Zip(zip) => {
                let short = |member: &Member| {
                    member.method == 0
                        && matches!(member.csize, Declared::Zero | Declared::Less)
                        && member.descriptor == Descriptor::None
                };
                let path = zip
                    .members
                    .iter()
                    .position(|member| matches!(member.content, Content::Path(_)))
                    .expect("a zip on the path holds the path");
                (zip.central != Central::True && short(&zip.members[path]))
                    || (zip.central == Central::Missing && zip.members[..path].iter().any(short))
            }
            _ => false,
        };
        hidden_here
            || in_a_gap
            || self
                .path_child()
                .is_some_and(|child| child.needs_carving(child_at_start))
    }

    /// The next node on the path to the signature, if this is a container.
    pub fn path_child(&self) -> Option<&Node> {
        match self {
            Node::Marker { .. } | Node::Eicar => None,
            Node::Zip(zip) => zip.path_member().content.path(),
            Node::Gzip(gzip) => Some(&gzip.inner),
            Node::Tar(tar) => tar.path_member().content.path(),
            Node::Embedded { inner, .. } => Some(inner),
        }
    }
}

impl Node {
    /// Keeps EICAR a whole file wherever it sits. clamd matches it only by its hash, so where a
    /// structure makes it anything else — bytes around it, a gzip member concatenated to it, the
    /// data of a tar entry that is no file, a stored member cut short or overrun, a tar desynced
    /// by a lying size — there is no signature to miss, for clamd or for anyone. Also merges
    /// bytes around bytes around an archive (shrinking can leave them) into one layer.
    fn keep_eicar_whole(&mut self) {
        if let Node::Embedded { before, inner, after } = self {
            while matches!(**inner, Node::Embedded { .. }) {
                let Node::Embedded {
                    before: inner_before,
                    inner: innermost,
                    after: inner_after,
                } = std::mem::replace(&mut **inner, Node::Eicar)
                else {
                    unreachable!("just matched")
                };
                before.extend(inner_before);
                let mut merged = inner_after;
                merged.append(after);
                *after = merged;
                *inner = innermost;
            }
        }
        match self {
            Node::Marker { .. } | Node::Eicar => return,
            Node::Zip(zip) => {
                for member in &mut zip.members {
                    if let Content::Path(inner) = &mut member.content {
                        inner.keep_eicar_whole();
                    }
                }
            }
            Node::Gzip(gzip) => gzip.inner.keep_eicar_whole(),
            Node::Tar(tar) => {
                for member in &mut tar.members {
                    if let Content::Path(inner) = &mut member.content {
                        inner.keep_eicar_whole();
                    }
                }
            }
            Node::Embedded { inner, .. } => inner.keep_eicar_whole(),
        }
        if let Node::Embedded { before, inner, after } = self {
            if **inner == Node::Eicar {
                *self = Node::Eicar;
                return;
            }
            // A decoy gzip right before or after a gzip of EICAR makes one multi-member gzip.
            if matches!(&**inner, Node::Gzip(gzip) if *gzip.inner == Node::Eicar) {
                for filler in before.last_mut().into_iter().chain(after.first_mut()) {
                    if *filler == Filler::DecoyGzip {
                        *filler = Filler::Text(100);
                    }
                }
            }
        }
        if self.path_child() != Some(&Node::Eicar) {
            return;
        }
        match self {
            Node::Zip(zip) => {
                for member in &mut zip.members {
                    let path = matches!(member.content, Content::Path(_));
                    if path && member.encoding == Encoding::Stored && member.csize != Declared::Zip64 {
                        member.csize = Declared::True;
                    }
                }
            }
            Node::Gzip(gzip) => {
                gzip.decoy_before = false;
                if gzip.trailing == Trailing::DecoyMember {
                    gzip.trailing = Trailing::None;
                }
            }
            Node::Tar(tar) => {
                for member in &mut tar.members {
                    let path = matches!(member.content, Content::Path(_));
                    if !matches!(member.typeflag, b'0' | 0 | b'7') {
                        member.typeflag = b'0';
                    }
                    // Base-256 is a size GNU tar reads; clamd does not.
                    if !(member.size == TarSize::Octal || path && member.size == TarSize::Base256) {
                        member.size = TarSize::Octal;
                    }
                    member.bad_checksum = false;
                }
            }
            Node::Marker { .. } | Node::Eicar | Node::Embedded { .. } => {}
        }
    }
}

impl Node {
    /// Every layer honest: members stored or deflated with true sizes and plain headers, plain
    /// gzip and ustar, no bytes around archives.
    fn make_plain(&mut self) {
        if let Node::Embedded { inner, .. } = self {
            let inner = std::mem::replace(&mut **inner, Node::Eicar);
            *self = inner;
        }
        match self {
            Node::Marker { .. } | Node::Eicar | Node::Embedded { .. } => {}
            Node::Zip(zip) => {
                zip.central = Central::Same;
                for member in &mut zip.members {
                    if member.encoding != Encoding::Stored {
                        member.encoding = Encoding::Deflate;
                    }
                    member.method = member.encoding.default_method();
                    member.version = 20;
                    // Paths of 100 bytes and more, as real ones often are: they make each layer
                    // compressible, so that nesting costs the guard a level of inflation each.
                    member.name_len = member.name_len.clamp(100, 4096);
                    member.extra_len = 0;
                    member.descriptor = Descriptor::None;
                    member.encrypted = false;
                    member.usize = Declared::True;
                    member.csize = Declared::True;
                    if let Content::Path(inner) = &mut member.content {
                        inner.make_plain();
                    }
                }
            }
            Node::Gzip(gzip) => {
                let inner = std::mem::replace(&mut gzip.inner, Box::new(Node::Eicar));
                *gzip = plain_gzip_of(*inner);
                gzip.inner.make_plain();
            }
            Node::Tar(tar) => {
                tar.format = TarFormat::Ustar;
                tar.end = true;
                for member in &mut tar.members {
                    member.typeflag = b'0';
                    member.size = TarSize::Octal;
                    member.bad_checksum = false;
                    member.name_len = member.name_len.clamp(1, 100);
                    if let Content::Path(inner) = &mut member.content {
                        inner.make_plain();
                    }
                }
            }
        }
    }
}

/// A gzip layer without any header option or trick.
fn plain_gzip_of(inner: Node) -> Gzip {
    Gzip {
        inner: Box::new(inner),
        name: 0,
        extra: None,
        comment: 0,
        hcrc: false,
        stored: false,
        broken: false,
        decoy_before: false,
        trailing: Trailing::None,
        isize_lie: false,
    }
}

impl Content {
    fn path(&self) -> Option<&Node> {
        match self {
            Content::Path(node) => Some(node),
            Content::Decoy(_) => None,
        }
    }
}

impl Zip {
    fn path_member(&self) -> &Member {
        self.members
            .iter()
            .find(|member| matches!(member.content, Content::Path(_)))
            .expect("a zip on the path holds the path")
    }
}

impl Tar {
    fn path_member(&self) -> &TarMember {
        self.members
            .iter()
            .find(|member| matches!(member.content, Content::Path(_)))
            .expect("a tar on the path holds the path")
    }
}

// ---------------------------------------------------------------------------------------------
// Shrinking

impl Object {
    /// Variants that are one step simpler, the most simplifying first.
    pub fn simpler(&self) -> Vec<Object> {
        let mut out = Vec::new();
        if self.chunk != 0 {
            out.push(Object {
                root: self.root.clone(),
                chunk: 0,
            });
        }
        for mut root in self.root.simpler() {
            root.keep_eicar_whole();
            let candidate = Object {
                root,
                chunk: self.chunk,
            };
            if candidate != *self && !out.contains(&candidate) {
                out.push(candidate);
            }
        }
        out
    }
}

impl Node {
    fn simpler(&self) -> Vec<Node> {
        let mut out = Vec::new();
        if let Some(child) = self.path_child() {
            out.push(child.clone());
        }
        match self {
            Node::Marker { before, after } => {
                // Not to zero: a bare marker is incompressible, so deflate stores it as it is, and
                // a shrunk repro would change from hidden to visible for that reason alone.
                let small = Size::bytes(64);
                if before.len() > MAX_FILE_SIZE + 1 {
                    out.push(Node::Marker {
                        before: Size::files(1, 1),
                        after: *after,
                    });
                }
                if before.len() > small.len() {
                    out.push(Node::Marker {
                        before: small,
                        after: *after,
                    });
                }
                if !after.is_zero() {
                    out.push(Node::Marker {
                        before: *before,
                        after: Size::ZERO,
                    });
                }
            }
            Node::Eicar => out.push(Node::Marker {
                before: Size::bytes(64),
                after: Size::ZERO,
            }),
            Node::Zip(zip) => {
                for (i, member) in zip.members.iter().enumerate() {
                    if matches!(member.content, Content::Decoy(_)) {
                        let mut fewer = zip.clone();
                        fewer.members.remove(i);
                        out.push(Node::Zip(fewer));
                    }
                }
                if zip.central != Central::Same {
                    out.push(Node::Zip(Zip {
                        central: Central::Same,
                        ..zip.clone()
                    }));
                }
                let at = zip
                    .members
                    .iter()
                    .position(|member| matches!(member.content, Content::Path(_)))
                    .expect("a path member");
                let with = |member: Member| {
                    let mut zip = zip.clone();
                    zip.members[at] = member;
                    Node::Zip(zip)
                };
                let member = &zip.members[at];
                for simpler in member.simpler() {
                    out.push(with(simpler));
                }
                if let Content::Path(inner) = &member.content {
                    for inner in inner.simpler() {
                        out.push(with(Member {
                            content: Content::Path(Box::new(inner)),
                            ..member.clone()
                        }));
                    }
                }
            }
            Node::Gzip(gzip) => {
                let plain = plain_gzip_of((*gzip.inner).clone());
                let resets: [(bool, Gzip); 9] = [
                    (
                        gzip.name != 0,
                        Gzip {
                            name: 0,
                            ..gzip.clone()
                        },
                    ),
                    (
                        gzip.extra.is_some(),
                        Gzip {
                            extra: None,
                            ..gzip.clone()
                        },
                    ),
                    (
                        gzip.comment != 0,
                        Gzip {
                            comment: 0,
                            ..gzip.clone()
                        },
                    ),
                    (
                        gzip.hcrc,
                        Gzip {
                            hcrc: false,
                            ..gzip.clone()
                        },
                    ),
                    (
                        gzip.stored,
                        Gzip {
                            stored: false,
                            ..gzip.clone()
                        },
                    ),
                    (
                        gzip.broken,
                        Gzip {
                            broken: false,
                            ..gzip.clone()
                        },
                    ),
                    (
                        gzip.decoy_before,
                        Gzip {
                            decoy_before: false,
                            ..gzip.clone()
                        },
                    ),
                    (
                        gzip.trailing != Trailing::None,
                        Gzip {
                            trailing: Trailing::None,
                            ..gzip.clone()
                        },
                    ),
                    (
                        gzip.isize_lie,
                        Gzip {
                            isize_lie: false,
                            ..gzip.clone()
                        },
                    ),
                ];
                if *gzip != plain {
                    out.push(Node::Gzip(plain));
                }
                out.extend(resets.into_iter().filter(|(on, _)| *on).map(|(_, g)| Node::Gzip(g)));
                for inner in gzip.inner.simpler() {
                    out.push(Node::Gzip(Gzip {
                        inner: Box::new(inner),
                        ..gzip.clone()
                    }));
                }
            }
            Node::Tar(tar) => {
                for (i, member) in tar.members.iter().enumerate() {
                    if matches!(member.content, Content::Decoy(_)) {
                        let mut fewer = tar.clone();
                        fewer.members.remove(i);
                        out.push(Node::Tar(fewer));
                    }
                }
                if tar.format != TarFormat::Ustar {
                    out.push(Node::Tar(Tar {
                        format: TarFormat::Ustar,
                        ..tar.clone()
                    }));
                }
                if !tar.end {
                    out.push(Node::Tar(Tar {
                        end: true,
                        ..tar.clone()
                    }));
                }
                let at = tar
                    .members
                    .iter()
                    .position(|member| matches!(member.content, Content::Path(_)))
                    .expect("a path member");
                let member = &tar.members[at];
                let with = |member: TarMember| {
                    let mut tar = tar.clone();
                    tar.members[at] = member;
                    Node::Tar(tar)
                };
                let resets = [
                    (
                        member.typeflag != b'0',
                        TarMember {
                            typeflag: b'0',
                            ..member.clone()
                        },
                    ),
                    (
                        member.name_len > 100,
                        TarMember {
                            name_len: 10,
                            ..member.clone()
                        },
                    ),
                    (
                        member.size != TarSize::Octal,
                        TarMember {
                            size: TarSize::Octal,
                            ..member.clone()
                        },
                    ),
                    (
                        member.bad_checksum,
                        TarMember {
                            bad_checksum: false,
                            ..member.clone()
                        },
                    ),
                ];
                for (on, simpler) in resets {
                    if on {
                        out.push(with(simpler));
                    }
                }
                if let Content::Path(inner) = &member.content {
                    for inner in inner.simpler() {
                        out.push(with(TarMember {
                            content: Content::Path(Box::new(inner)),
                            ..member.clone()
                        }));
                    }
                }
            }
            Node::Embedded { before, inner, after } => {
                for i in 0..before.len() {
                    let mut fewer = before.clone();
                    fewer.remove(i);
                    if !fewer.is_empty() || !after.is_empty() {
                        out.push(Node::Embedded {
                            before: fewer,
                            inner: inner.clone(),
                            after: after.clone(),
                        });
                    }
                }
                for i in 0..after.len() {
                    let mut fewer = after.clone();
                    fewer.remove(i);
                    if !fewer.is_empty() || !before.is_empty() {
                        out.push(Node::Embedded {
                            before: before.clone(),
                            inner: inner.clone(),
                            after: fewer,
                        });
                    }
                }
                for (i, filler) in before.iter().enumerate() {
                    if let Filler::Junk(len) | Filler::Text(len) = filler {
                        if *len > 1 {
                            let mut shorter = before.clone();
                            shorter[i] = Filler::Junk(1);
                            out.push(Node::Embedded {
                                before: shorter,
                                inner: inner.clone(),
                                after: after.clone(),
                            });
                        }
                    }
                }
                for simpler in inner.simpler() {
                    out.push(Node::Embedded {
                        before: before.clone(),
                        inner: Box::new(simpler),
                        after: after.clone(),
                    });
                }
            }
        }
        out
    }
}

impl Member {
    /// The member with one attribute reset to the plain one.
    fn simpler(&self) -> Vec<Member> {
        let plain_method = self.encoding.default_method();
        let candidates = [
            (
                self.method != plain_method && self.encoding != Encoding::Xor,
                Member {
                    method: plain_method,
                    ..self.clone()
                },
            ),
            (
                self.encoding != Encoding::Deflate,
                Member {
                    encoding: Encoding::Deflate,
                    method: 8,
                    ..self.clone()
                },
            ),
            (
                self.version != 20,
                Member {
                    version: 20,
                    ..self.clone()
                },
            ),
            (
                self.name_len == 0 || self.name_len > 255,
                Member {
                    name_len: 8,
                    ..self.clone()
                },
            ),
            (
                self.extra_len != 0,
                Member {
                    extra_len: 0,
                    ..self.clone()
                },
            ),
            (
                self.descriptor != Descriptor::None,
                Member {
                    descriptor: Descriptor::None,
                    ..self.clone()
                },
            ),
            (
                self.encrypted,
                Member {
                    encrypted: false,
                    ..self.clone()
                },
            ),
            (
                self.usize != Declared::True,
                Member {
                    usize: Declared::True,
                    ..self.clone()
                },
            ),
            (
                self.csize != Declared::True,
                Member {
                    csize: Declared::True,
                    ..self.clone()
                },
            ),
        ];
        candidates
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, member)| member)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Bytes

/// Builds structures' bytes; remembers the costly encodings of leaves (a megabyte of zeros
/// deflates and checksums in milliseconds, but thousands of times add up in a debug build).
#[derive(Default)]
pub struct Builder {
    leaves: HashMap<(Codec, String), Encoded>,
}

/// Content as the headers need it: its length and crc, and its encoded bytes.
#[derive(Clone)]
struct Encoded {
    len: usize,
    crc: u32,
    data: Vec<u8>,
}

/// How content is encoded: as a zip member, or as the deflate stream of a gzip member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Codec {
    Member(Encoding),
    Gzip { stored: bool, broken: bool },
}

impl Codec {
    fn apply(self, data: &[u8]) -> Vec<u8> {
        match self {
            Codec::Member(encoding) => encode(encoding, data),
            Codec::Gzip { broken: true, .. } => broken_deflate(data),
            Codec::Gzip { stored: true, .. } => stored_deflate(data),
            Codec::Gzip { .. } => deflate(data),
        }
    }
}

impl Object {
    /// The object's bytes; the same structure always gives the same bytes.
    pub fn bytes(&self, builder: &mut Builder) -> Vec<u8> {
        self.root.bytes(builder)
    }
}

impl Node {
    fn bytes(&self, builder: &mut Builder) -> Vec<u8> {
        match self {
            Node::Marker { before, after } => {
                // Zeroed allocations, not `resize`: a debug build fills byte by byte.
                let mut out = vec![0u8; before.len() + TEST_MARKER.len() + after.len()];
                out[before.len()..before.len() + TEST_MARKER.len()].copy_from_slice(TEST_MARKER);
                out
            }
            Node::Eicar => EICAR.to_vec(),
            Node::Zip(zip) => zip_bytes(zip, builder),
            Node::Gzip(gzip) => gzip_bytes(gzip, builder),
            Node::Tar(tar) => tar_bytes(tar, builder),
            Node::Embedded { before, inner, after } => {
                let mut out = Vec::new();
                for filler in before {
                    out.extend(filler.bytes());
                }
                out.extend(inner.bytes(builder));
                for filler in after {
                    out.extend(filler.bytes());
                }
                out
            }
        }
    }

    /// About how many bytes the node takes, cheaply: to keep raw layers over big contents rare.
    fn approx_len(&self) -> usize {
        match self {
            Node::Marker { before, after } => before.len() + after.len() + TEST_MARKER.len(),
            Node::Eicar => EICAR.len(),
            Node::Zip(zip) => zip.members.iter().map(Member::approx_len).sum::<usize>() + 100,
            Node::Gzip(gzip) if gzip.stored => gzip.inner.approx_len() + 100,
            Node::Gzip(gzip) => gzip.inner.approx_len() / 100 + 100,
            Node::Tar(tar) => {
                tar.members
                    .iter()
                    .map(|member| member.content.approx_len())
                    .sum::<usize>()
                    + 1536
            }
            Node::Embedded { before, inner, after } => {
                let fillers: usize = before
                    .iter()
                    .chain(after)
                    .map(|filler| match filler {
                        Filler::Junk(len) | Filler::Text(len) => *len,
                        _ => 200,
                    })
                    .sum();
                inner.approx_len() + fillers
            }
        }
    }
}

impl Member {
    fn approx_len(&self) -> usize {
        let content = self.content.approx_len();
        match self.encoding {
            Encoding::Stored | Encoding::Xor => content,
            _ => content / 100,
        }
    }
}

impl Content {
    fn bytes(&self, builder: &mut Builder) -> Vec<u8> {
        match self {
            Content::Path(node) => node.bytes(builder),
            Content::Decoy(size) => decoy(size.len()),
        }
    }

    fn approx_len(&self) -> usize {
        match self {
            Content::Path(node) => node.approx_len(),
            Content::Decoy(size) => size.len(),
        }
    }

    /// What names the content in the cache, if it is a leaf.
    fn leaf_key(&self) -> Option<String> {
        match self {
            Content::Path(node) if matches!(**node, Node::Marker { .. } | Node::Eicar) => Some(node.to_string()),
            Content::Decoy(size) => Some(format!("decoy {size}")),
            Content::Path(_) => None,
        }
    }
}

fn decoy(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let tag = b"decoy";
    let tag_len = tag.len().min(len);
    out[..tag_len].copy_from_slice(&tag[..tag_len]);
    out
}

/// Appends `len` zero bytes (a copy of a zeroed allocation: fast in a debug build too).
fn zeros(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&vec![0u8; len]);
}

/// How many bytes from the start of `data` (at most `max`) equal `value`, eight at a time.
fn run_length(data: &[u8], value: u8, max: usize) -> usize {
    let window = &data[..data.len().min(max)];
    let word = u64::from_ne_bytes([value; 8]);
    let mut n = 0;
    while n + 8 <= window.len() && u64::from_ne_bytes(window[n..n + 8].try_into().expect("eight bytes")) == word {
        n += 8;
    }
    while n < window.len() && window[n] == value {
        n += 1;
    }
    n
}

impl Builder {
    /// `content` encoded with `codec`; leaves come from the cache.
    fn encoded(&mut self, codec: Codec, content: &Content) -> Encoded {
        let key = content.leaf_key().map(|key| (codec, key));
        if let Some(hit) = key.as_ref().and_then(|key| self.leaves.get(key)) {
            return hit.clone();
        }
        let raw = content.bytes(self);
        let encoded = Encoded {
            len: raw.len(),
            crc: crc32(&raw),
            data: codec.apply(&raw),
        };
        if let Some(key) = key {
            self.leaves.insert(key, encoded.clone());
        }
        encoded
    }

    /// A node's bytes encoded with `codec`, through the cache when the node is a leaf.
    fn encoded_node(&mut self, codec: Codec, node: &Node) -> Encoded {
        match node {
            Node::Marker { .. } | Node::Eicar => self.encoded(codec, &Content::Path(Box::new(node.clone()))),
            _ => {
                let raw = node.bytes(self);
                Encoded {
                    len: raw.len(),
                    crc: crc32(&raw),
                    data: codec.apply(&raw),
                }
            }
        }
    }
}

fn encode(encoding: Encoding, data: &[u8]) -> Vec<u8> {
    match encoding {
        Encoding::Stored => data.to_vec(),
        Encoding::Deflate => deflate(data),
        Encoding::Deflate64 => fixed_huffman(data),
        Encoding::Implode => implode(data),
        Encoding::Bzip2 => bzip2(data).unwrap_or_else(|| xor(data)),
        Encoding::Xor => xor(data),
        Encoding::Broken => broken_deflate(data),
    }
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn stored_deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::none());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// The content, sync-flushed but not finished, then a block of the invalid type 3.
fn broken_deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut out = Vec::with_capacity(data.len() / 100 + 1024);
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(64 * 1024);
        }
        let before = compress.total_in();
        compress
            .compress_vec(input, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        input = &input[(compress.total_in() - before) as usize..];
        if input.is_empty() && out.capacity() - out.len() >= 1024 {
            // One more call with room to spare makes sure the flush is complete.
            compress
                .compress_vec(&[], &mut out, flate2::FlushCompress::Sync)
                .unwrap();
            break;
        }
    }
    // BFINAL 1, BTYPE 11: "invalid block type".
    out.extend_from_slice(&[0x07, 0xff, 0xff, 0xff]);
    out
}

fn xor(data: &[u8]) -> Vec<u8> {
    data.iter().map(|byte| byte ^ 0xa5).collect()
}

/// `bzip2 -c`, when the tool is installed.
fn bzip2(data: &[u8]) -> Option<Vec<u8>> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("bzip2")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let output = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    output.status.success().then_some(output.stdout)
}

/// Bits least significant first, as deflate and implode read them.
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    count: u32,
}

impl BitWriter {
    fn bits(&mut self, value: u32, count: u32) {
        self.acc |= u64::from(value) << self.count;
        self.count += count;
        while self.count >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.count -= 8;
        }
    }

    /// A Huffman code, its most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        for bit in (0..len).rev() {
            self.bits((code >> bit) & 1, 1);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.count > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// One fixed-Huffman deflate block: literals, and runs as matches at distance 1 of at most 257
/// bytes (258 is coded differently in deflate64), so it is valid deflate and deflate64 alike.
fn fixed_huffman(data: &[u8]) -> Vec<u8> {
    const BASE: [u32; 28] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227,
    ];
    fn symbol(w: &mut BitWriter, symbol: u32) {
        match symbol {
            0..=143 => w.code(0x30 + symbol, 8),
            144..=255 => w.code(0x190 + symbol - 144, 9),
            256..=279 => w.code(symbol - 256, 7),
            _ => w.code(0xc0 + symbol - 280, 8),
        }
    }
    let mut w = BitWriter::default();
    w.bits(1, 1); // final block
    w.bits(1, 2); // fixed Huffman
    let mut i = 0;
    while i < data.len() {
        let run = if i > 0 {
            run_length(&data[i..], data[i - 1], 257)
        } else {
            0
        };
        if run >= 3 {
            let len = run as u32;
            let code = BASE.iter().rposition(|&base| base <= len).expect("len ≥ 3");
            let extra = match code {
                0..=7 => 0,
                _ => (code as u32 - 4) / 4,
            };
            symbol(&mut w, 257 + code as u32);
            w.bits(len - BASE[code], extra);
            w.code(0, 5); // distance 1
            i += run;
        } else {
            symbol(&mut w, u32::from(data[i]));
            i += 1;
        }
    }
    symbol(&mut w, 256);
    w.finish()
}

/// PKWARE implode with two Shannon-Fano trees (lengths, distances; literals uncoded), a 4 KiB
/// window, every code six bits long; runs become matches at distance 1 of up to 320 bytes.
fn implode(data: &[u8]) -> Vec<u8> {
    // A tree: one byte (entries - 1), then entries of (count - 1) << 4 | (bits - 1):
    // four entries of sixteen 6-bit codes. Symbol s then has the code 63 - s.
    let tree = [3u8, 0xf5, 0xf5, 0xf5, 0xf5];
    let mut out = Vec::new();
    out.extend_from_slice(&tree); // lengths
    out.extend_from_slice(&tree); // distances
    let mut w = BitWriter::default();
    let mut i = 0;
    while i < data.len() {
        let run = if i > 0 {
            run_length(&data[i..], data[i - 1], 63 + 255 + 2)
        } else {
            0
        };
        if run >= 2 {
            let len = run as u32 - 2;
            w.bits(0, 1); // a match
            w.bits(0, 6); // distance - 1, low six bits
            w.code(63, 6); // distance - 1, high bits: symbol 0
            w.code(63 - len.min(63), 6);
            if len >= 63 {
                w.bits(len - 63, 8);
            }
            i += run;
        } else {
            w.bits(1, 1); // a literal, uncoded
            w.bits(u32::from(data[i]), 8);
            i += 1;
        }
    }
    out.extend(w.finish());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

/// A name of `len` bytes: `d/d/…/m.bin`.
fn member_name(len: usize) -> Vec<u8> {
    let tail = b"m.bin";
    if len <= tail.len() {
        return tail[tail.len() - len..].to_vec();
    }
    let mut name: Vec<u8> = b"d/".iter().copied().cycle().take(len - tail.len()).collect();
    name.extend_from_slice(tail);
    name
}

/// An extra field of exactly `len` bytes (at least the zip64 block, if any): the zip64 block,
/// then filler blocks with an unknown id, then up to three loose bytes.
fn extra_field(len: usize, zip64: Option<(u64, u64)>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some((usize, csize)) = zip64 {
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(&usize.to_le_bytes());
        out.extend_from_slice(&csize.to_le_bytes());
    }
    while len >= out.len() + 4 {
        let size = (len - out.len() - 4).min(0xffff);
        out.extend_from_slice(&0xcafeu16.to_le_bytes());
        out.extend_from_slice(&(size as u16).to_le_bytes());
        out.extend((0..size).map(|i| b'x' ^ (i as u8 & 7)));
    }
    out.resize(len.max(out.len()), b'x');
    out
}

fn zip_bytes(zip: &Zip, builder: &mut Builder) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for member in &zip.members {
        let Encoded {
            len: real_u,
            crc,
            data: payload,
        } = builder.encoded(Codec::Member(member.encoding), &member.content);
        let real_c = payload.len();
        let zip64 = member.usize == Declared::Zip64 || member.csize == Declared::Zip64;
        let descriptor = member.descriptor != Descriptor::None;
        let flags: u16 = u16::from(member.encrypted) | if descriptor { 8 } else { 0 };
        let (local_u, local_c, local_crc) = if descriptor {
            (0, 0, 0)
        } else {
            (member.usize.value(real_u), member.csize.value(real_c), crc)
        };
        let name = member_name(member.name_len);
        let zip64_block = zip64.then_some((real_u as u64, real_c as u64));
        let extra = extra_field(member.extra_len, zip64_block);
        let offset = out.len() as u32;
        let fields = |buf: &mut Vec<u8>, crc: u32, csize: u32, usize: u32, extra_len: usize| {
            buf.extend_from_slice(&member.version.to_le_bytes());
            buf.extend_from_slice(&flags.to_le_bytes());
            buf.extend_from_slice(&member.method.to_le_bytes());
            buf.extend_from_slice(&[0, 0, 0x21, 0]); // time, date
            buf.extend_from_slice(&crc.to_le_bytes());
            buf.extend_from_slice(&csize.to_le_bytes());
            buf.extend_from_slice(&usize.to_le_bytes());
            buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
            buf.extend_from_slice(&(extra_len as u16).to_le_bytes());
        };
        out.extend_from_slice(b"PK\x03\x04");
        fields(&mut out, local_crc, local_c, local_u, extra.len());
        out.extend_from_slice(&name);
        out.extend_from_slice(&extra);
        out.extend_from_slice(&payload);
        if descriptor {
            if member.descriptor == Descriptor::Signed {
                out.extend_from_slice(b"PK\x07\x08");
            }
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&(real_c as u32).to_le_bytes());
            out.extend_from_slice(&(real_u as u32).to_le_bytes());
        }

        let (central_u, central_c) = if descriptor || zip.central == Central::True {
            (real_u as u32, real_c as u32)
        } else {
            (local_u, local_c)
        };
        let central_extra = extra_field(0, zip64_block.filter(|_| zip.central != Central::True));
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        fields(&mut central, crc, central_c, central_u, central_extra.len());
        central.extend_from_slice(&[0; 8]); // comment length, disk, internal + external attributes
        central.extend_from_slice(&[0; 2]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(&name);
        central.extend_from_slice(&central_extra);
    }
    if zip.central != Central::Missing {
        let central_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(b"PK\x05\x06");
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(zip.members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(zip.members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&central_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
    }
    out
}

/// A plain gzip member of `data`.
fn plain_gzip(data: &[u8]) -> Vec<u8> {
    let encoded = Encoded {
        len: data.len(),
        crc: crc32(data),
        data: deflate(data),
    };
    gzip_member(&encoded, None)
}

/// A gzip member around already deflated content, with `gzip`'s header options.
fn gzip_member(content: &Encoded, gzip: Option<&Gzip>) -> Vec<u8> {
    let mut flags = 0u8;
    let (hcrc, extra, name, comment, isize_lie) = match gzip {
        Some(gzip) => (gzip.hcrc, gzip.extra, gzip.name, gzip.comment, gzip.isize_lie),
        None => (false, None, 0, 0, false),
    };
    if hcrc {
        flags |= 0x02;
    }
    if extra.is_some() {
        flags |= 0x04;
    }
    if name > 0 {
        flags |= 0x08;
    }
    if comment > 0 {
        flags |= 0x10;
    }
    let mut out = vec![0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 3];
    if let Some(extra) = extra {
        let extra = extra.min(0xffff);
        out.extend_from_slice(&(extra as u16).to_le_bytes());
        out.extend((0..extra).map(|i| b'e' ^ (i as u8 & 3)));
    }
    if name > 0 {
        out.extend(member_name(name));
        out.push(0);
    }
    if comment > 0 {
        out.extend(std::iter::repeat_n(b'c', comment));
        out.push(0);
    }
    if hcrc {
        let crc = crc32(&out) as u16;
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out.extend_from_slice(&content.data);
    out.extend_from_slice(&content.crc.to_le_bytes());
    let isize = if isize_lie { content.len / 2 } else { content.len };
    out.extend_from_slice(&(isize as u32).to_le_bytes());
    out
}

fn gzip_bytes(gzip: &Gzip, builder: &mut Builder) -> Vec<u8> {
    let mut out = Vec::new();
    if gzip.decoy_before {
        out.extend(plain_gzip(&decoy(100)));
    }
    let codec = Codec::Gzip {
        stored: gzip.stored,
        broken: gzip.broken,
    };
    let content = builder.encoded_node(codec, &gzip.inner);
    out.extend(gzip_member(&content, Some(gzip)));
    match gzip.trailing {
        Trailing::None => {}
        Trailing::Garbage => out.extend(junk(100)),
        Trailing::DecoyMember => out.extend(plain_gzip(&decoy(100))),
    }
    out
}

fn tar_header(name: &[u8], size_field: [u8; 12], typeflag: u8, format: TarFormat, bad_checksum: bool) -> [u8; 512] {
    let mut header = [0u8; 512];
    let name = &name[..name.len().min(100)];
    header[..name.len()].copy_from_slice(name);
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(&size_field);
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = typeflag;
    match format {
        TarFormat::Ustar => {
            header[257..263].copy_from_slice(b"ustar\0");
            header[263..265].copy_from_slice(b"00");
        }
        TarFormat::Gnu => header[257..265].copy_from_slice(b"ustar  \0"),
        TarFormat::V7 => {}
    }
    header[148..156].copy_from_slice(b"        ");
    let mut sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    if bad_checksum {
        sum += 1;
    }
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    header
}

fn octal_size(size: usize) -> [u8; 12] {
    let mut field = [0u8; 12];
    field.copy_from_slice(format!("{size:011o}\0").as_bytes());
    field
}

fn pad_block(out: &mut Vec<u8>) {
    let padded = out.len().div_ceil(512) * 512;
    zeros(out, padded - out.len());
}

fn tar_bytes(tar: &Tar, builder: &mut Builder) -> Vec<u8> {
    let mut out = Vec::new();
    for member in &tar.members {
        let content = member.content.bytes(builder);
        let name = member_name(member.name_len);
        if member.name_len > 100 {
            let mut long = name.clone();
            long.push(0);
            out.extend(tar_header(
                b"././@LongLink",
                octal_size(long.len()),
                b'L',
                tar.format,
                false,
            ));
            out.extend(long);
            pad_block(&mut out);
        }
        let size_field = match member.size {
            TarSize::Octal => octal_size(content.len()),
            TarSize::Base256 => {
                let mut field = [0u8; 12];
                field[0] = 0x80;
                field[4..].copy_from_slice(&(content.len() as u64).to_be_bytes());
                field
            }
            TarSize::Less => octal_size(content.len() / 2),
            TarSize::More => octal_size(content.len() + 1024),
        };
        out.extend(tar_header(
            &name,
            size_field,
            member.typeflag,
            tar.format,
            member.bad_checksum,
        ));
        out.extend(content);
        pad_block(&mut out);
    }
    if tar.end {
        zeros(&mut out, 1024);
    }
    out
}

/// Deterministic noise of `len` bytes.
fn junk(len: usize) -> Vec<u8> {
    let mut rng = Rng::new(len as u64 ^ 0x6a75_6e6b);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

impl Filler {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Filler::Junk(len) => junk(*len),
            Filler::Text(len) => b"lorem ipsum dolor sit amet "
                .iter()
                .copied()
                .cycle()
                .take(*len)
                .collect(),
            Filler::DecoyZip => super::archives::zip_one("decoy.txt", b"a clean decoy\n"),
            Filler::DecoyGzip => plain_gzip(b"a clean decoy\n"),
            Filler::DecoyTar => super::archives::tar("decoy.txt", b"a clean decoy\n"),
        }
    }
}

/// Whether zip members can be bzip2-compressed here (the `bzip2` tool); without it, bzip2
/// members hold unreadable bytes instead.
pub fn bzip2_available() -> bool {
    bzip2(b"probe").is_some()
}

/// Objects whose signature clamd must find with the differential test's limits: each encoding
/// clamd decodes, with the marker alone and ending exactly at `MaxFileSize`. A miss means an
/// encoder writes something clamd does not read.
pub fn calibration() -> Vec<Object> {
    let at_limit = || Node::Marker {
        before: Size::files(1, -MARKER_LEN),
        after: Size::ZERO,
    };
    let alone = || Node::Marker {
        before: Size::ZERO,
        after: Size::ZERO,
    };
    let zip_of = |encoding: Encoding, leaf: Node| {
        Node::Zip(Zip {
            members: vec![Member {
                content: Content::Path(Box::new(leaf)),
                encoding,
                method: encoding.default_method(),
                version: 20,
                name_len: 8,
                extra_len: 0,
                descriptor: Descriptor::None,
                encrypted: false,
                usize: Declared::True,
                csize: Declared::True,
            }],
            central: Central::Same,
        })
    };
    let mut encodings = vec![
        Encoding::Stored,
        Encoding::Deflate,
        Encoding::Deflate64,
        Encoding::Implode,
    ];
    if bzip2_available() {
        encodings.push(Encoding::Bzip2);
    }
    let mut roots = Vec::new();
    for encoding in encodings {
        roots.push(zip_of(encoding, alone()));
        // Stored, the whole object would pass MaxFileSize and clamd would flag that instead.
        if encoding != Encoding::Stored {
            roots.push(zip_of(encoding, at_limit()));
        }
    }
    roots.push(zip_of(Encoding::Deflate, Node::Eicar));
    let gzip_of = |leaf: Node| Node::Gzip(plain_gzip_of(leaf));
    roots.push(gzip_of(alone()));
    roots.push(gzip_of(at_limit()));
    roots.push(Node::Tar(Tar {
        members: vec![TarMember {
            content: Content::Path(Box::new(alone())),
            name_len: 8,
            typeflag: b'0',
            size: TarSize::Octal,
            bad_checksum: false,
        }],
        format: TarFormat::Ustar,
        end: true,
    }));
    roots.into_iter().map(|root| Object { root, chunk: 0 }).collect()
}
