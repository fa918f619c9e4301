//! Archive files built byte by byte for the corpus (no archiver crate needed): zip with deflate
//! or store, nesting, encryption flags and lying sizes; gzip; ustar.

use std::io::Write;

pub struct Member<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
    pub deflate: bool,
    /// Uncompressed size written in the headers; `None` for the true size.
    pub declared: Option<u32>,
    /// Sets the "encrypted" flag (the data is left as is: clamd judges by the flag).
    pub encrypted: bool,
}

impl<'a> Member<'a> {
    pub fn deflated(name: &'a str, data: &'a [u8]) -> Self {
        Self {
            name,
            data,
            deflate: true,
            declared: None,
            encrypted: false,
        }
    }
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A complete zip: local entries, central directory, end record.
pub fn zip(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for member in members {
        let payload = if member.deflate {
            deflate(member.data)
        } else {
            member.data.to_vec()
        };
        let mut crc = flate2::Crc::new();
        crc.update(member.data);
        let method: u16 = if member.deflate { 8 } else { 0 };
        let flags: u16 = if member.encrypted { 1 } else { 0 };
        let size = member.declared.unwrap_or(member.data.len() as u32);
        let offset = out.len() as u32;
        let common = |buf: &mut Vec<u8>| {
            buf.extend_from_slice(&20u16.to_le_bytes());
            buf.extend_from_slice(&flags.to_le_bytes());
            buf.extend_from_slice(&method.to_le_bytes());
            buf.extend_from_slice(&[0, 0, 0x21, 0]); // time, date
            buf.extend_from_slice(&crc.sum().to_le_bytes());
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&size.to_le_bytes());
            buf.extend_from_slice(&(member.name.len() as u16).to_le_bytes());
            buf.extend_from_slice(&0u16.to_le_bytes());
        };
        out.extend_from_slice(b"PK\x03\x04");
        common(&mut out);
        out.extend_from_slice(member.name.as_bytes());
        out.extend_from_slice(&payload);

        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        common(&mut central);
        central.extend_from_slice(&[0; 8]); // comment len, disk, internal + external attributes
        central.extend_from_slice(&[0; 2]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(member.name.as_bytes());
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A zip of one deflated member.
pub fn zip_one(name: &str, data: &[u8]) -> Vec<u8> {
    zip(&[Member::deflated(name, data)])
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A ustar archive of one file.
pub fn tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

/// The clamd hole: a deflated member of `size` zero bytes with the test marker after it.
pub fn hole_zip(size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    data.extend_from_slice(super::TEST_MARKER);
    zip_one("payload.bin", &data)
}
