//! `--mqtt`'s URL: `mqtt://[user:pass@]host[:port][/prefix]` or `mqtts://...` (TLS).

use super::MqttError;

/// Where the broker is and what the topics start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port (default 1883, 8883 for `mqtts`).
    pub port: u16,
    /// Whether to connect over TLS.
    pub tls: bool,
    /// The topic prefix (the URL's path without its slashes; default `edge-fer`).
    pub prefix: String,
    /// User name and password from the URL, if any (percent-decoded).
    pub credentials: Option<(String, String)>,
}

/// The topic prefix when the URL has no path.
pub const DEFAULT_PREFIX: &str = "edge-fer";

impl BrokerUrl {
    /// Parses `text`.
    ///
    /// # Errors
    /// [`MqttError::Url`] naming what is wrong: not a URL, another scheme, no host, a query or
    /// fragment, or a prefix with MQTT's wildcards.
    pub fn parse(text: &str) -> Result<Self, MqttError> {
        let bad = |reason: &str| MqttError::Url {
            url: redact(text),
            reason: reason.to_string(),
        };
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let tls = match url.scheme() {
            "mqtt" => false,
            "mqtts" => true,
            other => {
                return Err(bad(&format!(
                    "the scheme is {other:?}: give mqtt:// or mqtts://"
                )))
            }
        };
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.trim_matches(['[', ']']).to_string(),
            _ => return Err(bad("no host")),
        };
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a query or fragment means nothing here"));
        }
        let prefix = url.path().trim_matches('/').to_string();
        if prefix.contains(['+', '#']) || prefix.split('/').any(str::is_empty) && !prefix.is_empty()
        {
            return Err(bad(&format!(
                "the topic prefix {prefix:?} has an empty level or a wildcard (+, #)"
            )));
        }
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| bad("the user name or password is not valid UTF-8"))
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, password) => Some((decode(user)?, decode(password.unwrap_or(""))?)),
        };
        Ok(BrokerUrl {
            host,
            port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
            tls,
            prefix: if prefix.is_empty() {
                DEFAULT_PREFIX.to_string()
            } else {
                prefix
            },
            credentials,
        })
    }

    /// `mqtt[s]://host:port`, for messages (never the credentials).
    pub fn broker(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// `text` with any password replaced, for error messages: by hand, because the text may not
/// parse as a URL at all.
fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => text.to_string(),
    }
}

fn percent_decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_prefix_and_credentials() {
        let url = BrokerUrl::parse("mqtt://kiosk:p%40ss@broker.local:1884/shop/floor1").unwrap();
        assert_eq!(
            url,
            BrokerUrl {
                host: "broker.local".into(),
                port: 1884,
                tls: false,
                prefix: "shop/floor1".into(),
                credentials: Some(("kiosk".into(), "p@ss".into())),
            }
        );
        assert_eq!(url.broker(), "mqtt://broker.local:1884");
        let url = BrokerUrl::parse("mqtts://10.0.0.2").unwrap();
        assert_eq!((url.port, url.tls), (8883, true));
        assert_eq!(url.prefix, DEFAULT_PREFIX);
        assert_eq!(url.credentials, None);
        assert_eq!(
            BrokerUrl::parse("mqtt://[::1]:1883/").unwrap().broker(),
            "mqtt://[::1]:1883"
        );
    }

    #[test]
    fn bad_urls_are_refused_saying_why_without_the_password() {
        for (text, says) in [
            ("broker:1883", "scheme"),
            ("http://broker/x", "give mqtt:// or mqtts://"),
            ("mqtt://", "host"),
            ("mqtt://broker/a/+/b", "wildcard"),
            ("mqtt://broker/a//b", "empty level"),
            ("mqtt://broker/x?y=1", "query"),
            ("mqtt://u:secret@broker:99999", "port"),
        ] {
            let err = BrokerUrl::parse(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
            assert!(!err.contains("secret"), "{text}: {err}");
        }
    }
}
