//! DNS over TCP: each message behind its length as two big-endian bytes (RFC 1035 4.2.2).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The next message on `reader`; None when the stream ends between messages. The buffer grows
/// with the bytes that arrive, not with the length the peer announces.
pub(crate) async fn read<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut length = [0u8; 2];
    if reader.read(&mut length[..1]).await? == 0 {
        return Ok(None);
    }
    reader.read_exact(&mut length[1..]).await?;
    let length = u16::from_be_bytes(length);
    let mut message = Vec::new();
    reader
        .take(u64::from(length))
        .read_to_end(&mut message)
        .await?;
    if message.len() != usize::from(length) {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(message))
}

/// Writes `message` behind its length, in one write.
pub(crate) async fn write<W: AsyncWrite + Unpin>(writer: &mut W, message: &[u8]) -> io::Result<()> {
    let length = u16::try_from(message.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "DNS message longer than 65535 bytes",
        )
    })?;
    let mut framed = Vec::with_capacity(2 + message.len());
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(message);
    writer.write_all(&framed).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_come_back_as_written() {
        let mut stream = Vec::new();
        write(&mut stream, b"first").await.unwrap();
        write(&mut stream, b"").await.unwrap();
        write(&mut stream, &[7; 300]).await.unwrap();
        assert_eq!(&stream[..2], &[0, 5]);

        let mut reader = stream.as_slice();
        assert_eq!(read(&mut reader).await.unwrap().unwrap(), b"first");
        assert_eq!(read(&mut reader).await.unwrap().unwrap(), b"");
        assert_eq!(read(&mut reader).await.unwrap().unwrap(), vec![7; 300]);
        assert_eq!(read(&mut reader).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_message_shorter_than_its_length_is_an_error() {
        let mut reader: &[u8] = &[0xff, 0xff, 1, 2, 3];
        let error = read(&mut reader).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);

        let mut reader: &[u8] = &[0];
        assert!(read(&mut reader).await.is_err());
    }

    #[tokio::test]
    async fn a_message_too_long_to_frame_is_refused() {
        let mut stream = Vec::new();
        let error = write(&mut stream, &vec![0; 65536]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(stream.is_empty());
    }
}
