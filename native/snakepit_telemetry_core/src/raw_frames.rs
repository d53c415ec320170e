//! A tonic codec that hands each received gRPC message over as its raw
//! bytes, for [`crate::scan`] to decode in one borrowing pass; requests are
//! encoded with prost as usual. The bytes are split off tonic's receive
//! buffer, not copied.

use std::marker::PhantomData;

use bytes::{Buf, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::ProstEncoder;

/// `Codec` of a call that sends `Req` messages and receives raw frames.
#[derive(Debug)]
pub struct RawFrames<Req>(PhantomData<Req>);

impl<Req> Default for RawFrames<Req> {
    fn default() -> Self {
        RawFrames(PhantomData)
    }
}

impl<Req: prost::Message + Send + 'static> Codec for RawFrames<Req> {
    type Encode = Req;
    type Decode = Bytes;
    type Encoder = ProstEncoder<Req>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

#[derive(Debug, Default)]
pub struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = buf.remaining();
        Ok(Some(buf.copy_to_bytes(n)))
    }
}
