//! The STUN a WebRTC transport checks itself before str0m sees it.

use str0m::config::CryptoProvider;
use str0m::ice::StunMessage;

/// A STUN binding request's username halves: (the server's ufrag, the client's ufrag).
pub(crate) fn binding_request_ufrags(buf: &[u8]) -> Option<(String, String)> {
    let msg = StunMessage::parse(buf).ok()?;
    if !msg.is_binding_request() {
        return None;
    }
    let (local, remote) = msg.split_username()?;
    Some((local.to_owned(), remote.to_owned()))
}

/// Whether a STUN message is a binding request with USE-CANDIDATE: the client (ICE controlling)
/// nominates the path it came on.
pub(crate) fn nominates(buf: &[u8]) -> bool {
    StunMessage::parse(buf).is_ok_and(|msg| msg.is_binding_request() && msg.use_candidate())
}

/// Whether a STUN message's MESSAGE-INTEGRITY verifies with a transport's ICE password.
pub(crate) fn verifies(crypto: &CryptoProvider, password: &str, contents: &[u8]) -> bool {
    let hmac = crypto.sha1_hmac_provider;
    StunMessage::parse(contents)
        .is_ok_and(|msg| msg.verify(password.as_bytes(), |key, data| hmac.sha1_hmac(key, data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_no_binding_request() {
        assert_eq!(binding_request_ufrags(&[0u8; 20]), None);
        assert_eq!(binding_request_ufrags(&[1u8; 64]), None);
    }
}
