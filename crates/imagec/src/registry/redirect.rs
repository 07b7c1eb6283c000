//! Which redirects a registry may send a request on: never from HTTPS to plain HTTP, never
//! to a registry the whitelist (`--whitelist-registry`) leaves out, at most
//! [`MAX_REDIRECTS`] in a row. Credentials do not follow a redirect to another host (reqwest
//! drops `Authorization` when the host or port changes), so a blob redirected to a storage
//! host is fetched there without them, as Docker does.

use reqwest::Url;

use super::lists::admitted;

/// Redirects followed in a row (Go's HTTP client stops after 10 too).
pub(crate) const MAX_REDIRECTS: usize = 10;

/// A redirect that is not followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RedirectRefused {
    #[error("stopped after {MAX_REDIRECTS} redirects")]
    TooMany,
    #[error("redirect from {from} to {to} refused: it leaves HTTPS for plain HTTP")]
    Downgrade { from: String, to: String },
    #[error("redirect to {to} refused: {host} is not a whitelisted registry")]
    NotWhitelisted { to: String, host: String },
}

/// Whether a request that went through `previous` (the first is the one asked for) may go
/// on to `next`.
pub(crate) fn check(
    previous: &[Url],
    next: &Url,
    whitelist: &[String],
    insecure: &[String],
) -> Result<(), RedirectRefused> {
    if previous.len() > MAX_REDIRECTS {
        return Err(RedirectRefused::TooMany);
    }
    if let Some(from) = previous.last() {
        if from.scheme() == "https" && next.scheme() != "https" {
            return Err(RedirectRefused::Downgrade {
                from: from.to_string(),
                to: next.to_string(),
            });
        }
    }
    let host = crate::transfer::host_of(next.as_str());
    if !admitted(whitelist, insecure, &host) {
        return Err(RedirectRefused::NotWhitelisted {
            to: next.to_string(),
            host,
        });
    }
    Ok(())
}

/// reqwest's policy doing [`check`].
pub(crate) fn policy(whitelist: Vec<String>, insecure: Vec<String>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        match check(attempt.previous(), attempt.url(), &whitelist, &insecure) {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<Url> {
        list.iter().map(|u| Url::parse(u).unwrap()).collect()
    }

    #[test]
    fn https_never_goes_down_to_http() {
        let prev = urls(&["https://reg.lan/v2/x/blobs/sha256:a"]);
        let next = Url::parse("http://reg.lan/blob").unwrap();
        assert_eq!(
            check(&prev, &next, &[], &[]).unwrap_err().to_string(),
            "redirect from https://reg.lan/v2/x/blobs/sha256:a to http://reg.lan/blob refused: it leaves HTTPS for plain HTTP"
        );
        let plain = urls(&["http://127.0.0.1:5000/v2/"]);
        assert!(
            check(&plain, &next, &[], &[]).is_ok(),
            "an HTTP registry may"
        );
    }

    #[test]
    fn a_whitelist_bounds_where_redirects_go() {
        let prev = urls(&["https://harbor.lan/v2/x/blobs/sha256:a"]);
        let storage = Url::parse("https://s3.example/bucket/a?sig=1").unwrap();
        let wl = vec!["harbor.lan".to_string()];
        assert_eq!(
            check(&prev, &storage, &wl, &[]).unwrap_err(),
            RedirectRefused::NotWhitelisted {
                to: storage.to_string(),
                host: "s3.example".into()
            }
        );
        let wl2 = vec!["harbor.lan".to_string(), "*.example".to_string()];
        assert!(check(&prev, &storage, &wl2, &[]).is_ok());
        assert!(
            check(&prev, &storage, &[], &[]).is_ok(),
            "without a whitelist a blob may live on a storage host"
        );
    }

    #[test]
    fn redirects_are_counted() {
        let next = Url::parse("https://reg.lan/x").unwrap();
        let ten = urls(&["https://reg.lan/x"; MAX_REDIRECTS]);
        assert!(check(&ten, &next, &[], &[]).is_ok());
        let eleven = urls(&["https://reg.lan/x"; MAX_REDIRECTS + 1]);
        assert_eq!(
            check(&eleven, &next, &[], &[]).unwrap_err().to_string(),
            "stopped after 10 redirects"
        );
    }
}
