//! Byte fixtures for the chunked decoder, and split-invariance properties.

use proptest::prelude::*;

use super::*;

/// Decodes `input` in one call: data and bytes consumed, or the status.
fn whole(input: &[u8]) -> Result<(Vec<u8>, usize, bool), u16> {
    let mut out = Vec::new();
    let (n, done) = ChunkedDecoder::new(0)
        .decode(input, &mut out)
        .map_err(|e| e.status)?;
    Ok((out, n, done))
}

/// Decodes `input` cut at `cuts` (sorted offsets), as successive reads would deliver it.
fn pieces(input: &[u8], cuts: &[usize], max_body: u64) -> Result<(Vec<u8>, usize, bool), u16> {
    let mut dec = ChunkedDecoder::new(max_body);
    let mut out = Vec::new();
    let (mut consumed, mut from) = (0, 0);
    for &cut in cuts.iter().chain([input.len()].iter()) {
        let (n, done) = dec
            .decode(&input[from..cut.max(from)], &mut out)
            .map_err(|e| e.status)?;
        consumed += n;
        if done {
            return Ok((out, consumed, true));
        }
        from = cut.max(from);
    }
    Ok((out, consumed, false))
}

fn status(input: &[u8]) -> u16 {
    match whole(input) {
        Err(s) => s,
        Ok(got) => panic!("{:?}: accepted as {got:?}", String::from_utf8_lossy(input)),
    }
}

#[test]
fn decodes_chunks_and_stops_at_the_end() {
    let input = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\nGET / HTTP/1.1";
    let (out, n, done) = whole(input).expect("valid");
    assert_eq!(out, b"hello, world");
    assert!(done);
    assert_eq!(&input[n..], b"GET / HTTP/1.1");
}

#[test]
fn every_split_point_gives_the_same_result() {
    let input: &[u8] =
        b"4;name=val\r\nWiki\r\nA;a;b=\"q v\"\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nnext";
    let expected = whole(input).expect("valid");
    for cut in 0..=input.len() {
        assert_eq!(
            pieces(input, &[cut], 0),
            Ok(expected.clone()),
            "cut at {cut}"
        );
    }
    let bytewise: Vec<usize> = (1..input.len()).collect();
    assert_eq!(pieces(input, &bytewise, 0), Ok(expected));
}

#[test]
fn hex_sizes_in_either_case_with_leading_zeros() {
    let input = b"000a\r\n0123456789\r\n1F\r\n0123456789abcdef0123456789ABCDE\r\n0\r\n\r\n";
    let (out, _, done) = whole(input).expect("valid");
    assert!(done);
    assert_eq!(out.len(), 10 + 31);
}

#[test]
fn malformed_sizes_are_400() {
    for input in [
        &b"0x10\r\n"[..],
        b"-1\r\n",
        b"+1\r\n",
        b"1 0\r\n",
        b" 1\r\n",
        b"\t1\r\n",
        b"\r\n",
        b";ext\r\n",
        b"g\r\n",
        b"1 \r\n",
        b"1\t\r\n",
        b"1 x\r\n",
    ] {
        assert_eq!(status(input), 400, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn more_than_16_hex_digits_is_400() {
    let max = b"FFFFFFFFFFFFFFFF\r\n";
    assert!(whole(max).is_ok(), "16 digits fit u64");
    assert_eq!(status(b"00000000000000001\r\n"), 400);
    assert_eq!(status(b"10000000000000000\r\n"), 400);
}

#[test]
fn extensions_allowed_with_bws_before_semicolon() {
    let input = b"3 ;a=1\r\nabc\r\n3\t; b\r\ndef\r\n0;last\r\n\r\n";
    let (out, _, done) = whole(input).expect("valid");
    assert_eq!((out.as_slice(), done), (&b"abcdef"[..], true));
}

#[test]
fn extensions_are_bounded_to_4k_per_line() {
    let mut fits = b"1;".to_vec();
    fits.resize(MAX_CHUNK_LINE - 2, b'x');
    fits.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
    assert!(whole(&fits).is_ok());
    let mut long = b"1;".to_vec();
    long.resize(MAX_CHUNK_LINE - 1, b'x');
    long.extend_from_slice(b"\r\n");
    assert_eq!(status(&long), 400);
}

#[test]
fn control_bytes_in_extensions_are_400() {
    assert_eq!(status(b"1;a\x00\r\n"), 400);
    assert_eq!(status(b"1;a\nb\r\n"), 400);
}

#[test]
fn bare_lf_and_bare_cr_are_400() {
    for input in [
        &b"1\na\r\n0\r\n\r\n"[..],
        b"1\ra\r\n",
        b"1\r\na\n0\r\n\r\n",
        b"1\r\na\r0\r\n\r\n",
        b"1\r\na\r\n0\n\r\n",
        b"1\r\na\r\n0\r\n\n",
        b"1\r\na\r\n0\r\n\rx",
        b"1\r\na\r\n0\r\nT: v\n\r\n",
        b"1\r\na\r\n0\r\nT: v\rx",
    ] {
        assert_eq!(status(input), 400, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn data_longer_than_its_size_is_400() {
    assert_eq!(status(b"1\r\nab\r\n0\r\n\r\n"), 400);
    assert_eq!(status(b"2\r\na\r\n0\r\n\r\n"), 400);
}

#[test]
fn trailers_are_parsed_and_dropped() {
    let input = b"1\r\na\r\n0\r\nExpires: never\r\nX-Sum:\tabc \r\n\r\nrest";
    let (out, n, done) = whole(input).expect("valid");
    assert_eq!((out.as_slice(), done), (&b"a"[..], true));
    assert_eq!(&input[n..], b"rest");
}

#[test]
fn malformed_trailers_are_400() {
    for input in [
        &b"0\r\n folded: x\r\n\r\n"[..],
        b"0\r\nName : x\r\n\r\n",
        b"0\r\n: x\r\n\r\n",
        b"0\r\nNoColon\r\n\r\n",
        b"0\r\nX: a\x00b\r\n\r\n",
    ] {
        assert_eq!(status(input), 400, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn trailer_section_is_bounded() {
    let mut input = b"0\r\nX: ".to_vec();
    input.resize(100, b'v');
    input.extend_from_slice(b"\r\n\r\n");
    let mut dec = ChunkedDecoder::new(0).with_max_trailer(64);
    let got = dec.decode(&input, &mut Vec::new()).map_err(|e| e.status);
    assert_eq!(got, Err(431));
    let mut roomy = ChunkedDecoder::new(0).with_max_trailer(104);
    assert_eq!(
        roomy.decode(&input, &mut Vec::new()),
        Ok((input.len(), true))
    );
}

#[test]
fn max_body_is_413_as_soon_as_a_size_announces_it() {
    let mut dec = ChunkedDecoder::new(10);
    let mut out = Vec::new();
    assert_eq!(dec.decode(b"6\r\nabcdef\r\n", &mut out), Ok((11, false)));
    assert_eq!(dec.total(), 6);
    let got = dec.decode(b"5\r\n", &mut out).map_err(|e| e.status);
    assert_eq!(got, Err(413));
    let mut exact = ChunkedDecoder::new(10);
    let body = b"6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n";
    assert_eq!(exact.decode(body, &mut Vec::new()), Ok((body.len(), true)));
    let mut huge = ChunkedDecoder::new(1 << 20);
    let got = huge.decode(b"FFFFFFFFFFFFFFFF\r\n", &mut Vec::new());
    assert_eq!(got.map_err(|e| e.status), Err(413));
}

#[test]
fn errors_are_sticky() {
    let mut dec = ChunkedDecoder::new(0);
    let mut out = Vec::new();
    let first = dec.decode(b"x", &mut out);
    assert_eq!(first.map_err(|e| e.status), Err(400));
    assert_eq!(dec.decode(b"1\r\na\r\n0\r\n\r\n", &mut out), first);
    assert_eq!(dec.decode(b"", &mut out), first);
}

#[test]
fn finished_decoder_consumes_nothing_more() {
    let mut dec = ChunkedDecoder::new(0);
    let mut out = Vec::new();
    assert_eq!(dec.decode(b"0\r\n\r\n", &mut out), Ok((5, true)));
    assert_eq!(dec.decode(b"more", &mut out), Ok((0, true)));
    assert!(out.is_empty());
}

/// A valid chunked body of `chunks`, sizes in random case with optional extensions and
/// trailers.
fn encode(chunks: &[Vec<u8>], upper: bool, ext: bool, trailers: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for chunk in chunks.iter().filter(|c| !c.is_empty()) {
        let size = if upper {
            format!("{:X}", chunk.len())
        } else {
            format!("{:x}", chunk.len())
        };
        body.extend_from_slice(size.as_bytes());
        if ext {
            body.extend_from_slice(b" ; ext=\"v\"");
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n");
    if trailers {
        body.extend_from_slice(b"X-Checksum: abc\r\nX-Other:\r\n");
    }
    body.extend_from_slice(b"\r\n");
    body
}

proptest! {
    #[test]
    fn encoded_bodies_decode_at_any_split(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
        upper in any::<bool>(),
        ext in any::<bool>(),
        trailers in any::<bool>(),
        mut cuts in prop::collection::vec(0usize..3000, 0..12),
    ) {
        let mut input = encode(&chunks, upper, ext, trailers);
        let len = input.len();
        input.extend_from_slice(b"tail");
        cuts.iter_mut().for_each(|c| *c %= input.len() + 1);
        cuts.sort_unstable();
        let expected = (chunks.concat(), len, true);
        prop_assert_eq!(whole(&input), Ok(expected.clone()));
        prop_assert_eq!(pieces(&input, &cuts, 0), Ok(expected));
    }

    #[test]
    fn arbitrary_input_is_split_invariant(
        input in prop::collection::vec(prop_oneof![
            Just(b'0'), Just(b'a'), Just(b'\r'), Just(b'\n'), Just(b';'), Just(b':'), any::<u8>()
        ], 0..200),
        mut cuts in prop::collection::vec(0usize..200, 0..8),
    ) {
        cuts.iter_mut().for_each(|c| *c %= input.len() + 1);
        cuts.sort_unstable();
        let one = whole(&input);
        let split = pieces(&input, &cuts, 0);
        match (&one, &split) {
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert_eq!(one, split),
        }
    }
}
