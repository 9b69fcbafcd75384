//! Property tests: hostile bytes never panic the decoders, and encoding then
//! decoding any frame, in any chunking, is the identity.

use bytes::{Bytes, BytesMut};
use geoul_proto::{
    decode_hello, decode_reply, encode, encode_hello, Frame, FrameDecoder, FrameKind,
};
use proptest::prelude::*;

fn arb_frame() -> impl Strategy<Value = Frame> {
    (
        prop::sample::select(FrameKind::ALL.to_vec()),
        any::<u64>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..2048),
    )
        .prop_map(|(kind, request_id, timeout_ms, payload)| Frame {
            kind,
            request_id,
            timeout_ms,
            payload: Bytes::from(payload),
        })
}

proptest! {
    #[test]
    fn random_bytes_never_panic_frame_decoder(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16),
        max in 0usize..4096,
    ) {
        let mut dec = FrameDecoder::new(max);
        for chunk in &chunks {
            dec.push(chunk);
            // Drain until the decoder wants more bytes or has failed.
            while let Ok(Some(frame)) = dec.next_frame() {
                prop_assert!(frame.payload.len() + geoul_proto::FRAME_HEADER_BYTES <= max);
            }
        }
        let _ = dec.finish();
    }

    #[test]
    fn random_bytes_never_panic_preamble_decoders(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_hello(&bytes);
        let _ = decode_reply(&bytes);
    }

    #[test]
    fn random_bytes_after_magic_never_panic(tail in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = geoul_proto::PREAMBLE_MAGIC.to_vec();
        bytes.extend_from_slice(&tail);
        if let Ok(Some((_, used))) = decode_hello(&bytes) {
            prop_assert!(used <= bytes.len());
        }
        if let Ok(Some((_, used))) = decode_reply(&bytes) {
            prop_assert!(used <= bytes.len());
        }
    }

    #[test]
    fn encode_decode_is_identity(
        frames in prop::collection::vec(arb_frame(), 0..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut wire = BytesMut::new();
        for frame in &frames {
            encode(frame, &mut wire).expect("small frame");
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();
        let mut dec = FrameDecoder::default();
        let mut got = Vec::new();
        for pair in points.windows(2) {
            dec.push(&wire[pair[0]..pair[1]]);
            while let Some(frame) = dec.next_frame().expect("valid stream") {
                got.push(frame);
            }
        }
        prop_assert_eq!(dec.finish(), Ok(()));
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn hello_round_trips(hello in "\\PC{0,60}") {
        let mut wire = BytesMut::new();
        if encode_hello(&hello, &mut wire).is_ok() {
            let (decoded, used) = decode_hello(&wire).expect("valid").expect("complete");
            prop_assert_eq!(decoded.hello, hello);
            prop_assert_eq!(used, wire.len());
        }
    }
}
