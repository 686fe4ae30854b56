//! URLs as etcd accepts them: Go's `net/url.Parse` as far as etcd's flags exercise it, then
//! etcd's `types.NewURLs` rules (scheme http/https/unix/unixs, a `host:port` address, no
//! path), with the same error texts, so `--listen-client-urls=foo` fails as etcd fails.

use std::fmt;
use std::net::IpAddr;

/// One URL from a URL-list flag. `Display` gives Go's `url.URL.String()`, which is also the
/// form hashed into member IDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EtcdUrl {
    scheme: String,
    userinfo: Option<String>,
    /// Go's `URL.Host`: host and port, IPv6 hosts in brackets.
    host: String,
    opaque: String,
    raw_query: Option<String>,
    fragment: Option<String>,
}

impl EtcdUrl {
    /// Parses one URL with etcd's `types.NewURLs` rules (input is trimmed as etcd trims it).
    pub fn parse(input: &str) -> Result<EtcdUrl, String> {
        let input = input.trim();
        let (url, path) = parse_go_url(input)?;
        if !matches!(url.scheme.as_str(), "http" | "https" | "unix" | "unixs") {
            return Err(format!(
                "URL scheme must be http, https, unix, or unixs: {input}"
            ));
        }
        if split_host_port(&url.host).is_err() {
            return Err(format!(
                "URL address does not have the form \"host:port\": {input}"
            ));
        }
        if !path.is_empty() {
            return Err(format!("URL must not contain a path: {input}"));
        }
        Ok(url)
    }

    /// `http`, `https`, `unix` or `unixs`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Host and port as written (`127.0.0.1:2379`, `[::1]:2379`, `localhost:2379`).
    pub fn host_port(&self) -> &str {
        &self.host
    }

    /// The host without port or IPv6 brackets.
    pub fn hostname(&self) -> &str {
        split_host_port(&self.host).map_or("", |(h, _)| h)
    }

    /// The port text (may be empty: etcd accepts `http://host:`).
    pub fn port(&self) -> &str {
        split_host_port(&self.host).map_or("", |(_, p)| p)
    }

    /// True for `https` and `unixs`: the listener or peer speaks TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.scheme.as_str(), "https" | "unixs")
    }

    /// True for `unix` and `unixs` (a Unix socket named by the host part).
    pub fn is_unix(&self) -> bool {
        matches!(self.scheme.as_str(), "unix" | "unixs")
    }

    /// A copy with host and port replaced, keeping the scheme (etcd's default-host rewrite,
    /// which formats `host:port` without brackets, as Go's `fmt.Sprintf("%s:%s")` does).
    pub fn with_host_port(&self, hostname: &str, port: &str) -> EtcdUrl {
        let mut url = self.clone();
        url.host = format!("{hostname}:{port}");
        url
    }
}

impl fmt::Display for EtcdUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if !self.opaque.is_empty() {
            f.write_str(&self.opaque)?;
        } else if !self.host.is_empty() || self.userinfo.is_some() {
            f.write_str("//")?;
            if let Some(user) = &self.userinfo {
                write!(f, "{user}@")?;
            }
            f.write_str(&self.host)?;
        }
        if let Some(q) = &self.raw_query {
            write!(f, "?{q}")?;
        }
        if let Some(frag) = &self.fragment {
            write!(f, "#{frag}")?;
        }
        Ok(())
    }
}

/// etcd's `types.NewURLs(strings.Split(s, ","))`: every element must parse; the result is
/// sorted by string form (duplicates kept, as etcd keeps them).
pub fn parse_url_list(s: &str) -> Result<Vec<EtcdUrl>, String> {
    let mut urls = s
        .split(',')
        .map(EtcdUrl::parse)
        .collect::<Result<Vec<_>, _>>()?;
    urls.sort_by_key(|u| u.to_string());
    Ok(urls)
}

/// Joins URLs with commas, as etcd prints URL lists.
pub fn join_urls(urls: &[EtcdUrl]) -> String {
    urls.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// etcd's `checkBindURLs`: a URL to listen on must name `localhost` or an IP literal.
pub fn check_bind_urls(urls: &[EtcdUrl]) -> Result<(), String> {
    for url in urls.iter().filter(|u| !u.is_unix()) {
        let (host, _) = split_host_port(&url.host)?;
        if host != "localhost" && host.parse::<IpAddr>().is_err() {
            return Err(format!("expected IP in URL for binding ({url})"));
        }
    }
    Ok(())
}

/// etcd's `checkHostURLs`: an advertised URL must have a non-empty host.
pub fn check_host_urls(urls: &[EtcdUrl]) -> Result<(), String> {
    for url in urls {
        let (host, _) = split_host_port(&url.host)?;
        if host.is_empty() {
            return Err(format!("unexpected empty host ({url})"));
        }
    }
    Ok(())
}

/// Go's `net.SplitHostPort`, with its error texts.
pub fn split_host_port(hostport: &str) -> Result<(&str, &str), String> {
    let addr_err = |why: &str| format!("address {hostport}: {why}");
    let colon = hostport
        .rfind(':')
        .ok_or_else(|| addr_err("missing port in address"))?;
    let (host, host_start, host_end) = if hostport.starts_with('[') {
        let end = hostport
            .find(']')
            .ok_or_else(|| addr_err("missing ']' in address"))?;
        if end + 1 == hostport.len() {
            return Err(addr_err("missing port in address"));
        }
        if end + 1 != colon {
            let why = if hostport.as_bytes()[end + 1] == b':' {
                "too many colons in address"
            } else {
                "missing port in address"
            };
            return Err(addr_err(why));
        }
        (&hostport[1..end], 1, end + 1)
    } else {
        let host = &hostport[..colon];
        if host.contains(':') {
            return Err(addr_err("too many colons in address"));
        }
        (host, 0, 0)
    };
    if hostport[host_start..].contains('[') {
        return Err(addr_err("unexpected '[' in address"));
    }
    if hostport[host_end..].contains(']') {
        return Err(addr_err("unexpected ']' in address"));
    }
    Ok((host, &hostport[colon + 1..]))
}

/// Go's `url.Parse` restricted to what matters for etcd's URL flags; returns the URL and
/// its (unescaped) path. Errors read `parse "<input>": <why>` as Go's do.
fn parse_go_url(input: &str) -> Result<(EtcdUrl, String), String> {
    let fail = |why: &str| format!("parse {}: {why}", go_quote(input));
    if input.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(fail("net/url: invalid control character in URL"));
    }
    let (rest, fragment) = match input.split_once('#') {
        Some((r, f)) => (r, Some(f.to_owned())),
        None => (input, None),
    };
    let (scheme, rest) = split_scheme(rest).map_err(fail)?;
    let (rest, raw_query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q.to_owned())),
        None => (rest, None),
    };
    let mut url = EtcdUrl {
        scheme: scheme.to_ascii_lowercase(),
        userinfo: None,
        host: String::new(),
        opaque: String::new(),
        raw_query,
        fragment,
    };
    if !rest.starts_with('/') {
        if !url.scheme.is_empty() {
            url.opaque = rest.to_owned();
            return Ok((url, String::new()));
        }
        let first_segment = rest.split('/').next().unwrap_or("");
        if first_segment.contains(':') {
            return Err(fail("first path segment in URL cannot contain colon"));
        }
        return Ok((url, rest.to_owned()));
    }
    let mut path = rest;
    if let Some(after) = rest.strip_prefix("//") {
        let (authority, p) = after.split_at(after.find('/').unwrap_or(after.len()));
        path = p;
        let (userinfo, host) = match authority.rfind('@') {
            Some(i) => (Some(authority[..i].to_owned()), &authority[i + 1..]),
            None => (None, authority),
        };
        check_go_host(host).map_err(|why| fail(&why))?;
        url.userinfo = userinfo;
        url.host = host.to_owned();
    }
    Ok((url, path.to_owned()))
}

/// Go's `getScheme`.
fn split_scheme(raw: &str) -> Result<(&str, &str), &'static str> {
    for (i, c) in raw.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return Err("missing protocol scheme"),
            ':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

/// Go's `parseHost` checks: brackets, a numeric optional port, legal host characters.
fn check_go_host(host: &str) -> Result<(), String> {
    let port_part = if host.starts_with('[') {
        let end = host.rfind(']').ok_or("missing ']' in host")?;
        &host[end + 1..]
    } else {
        host.rfind(':').map_or("", |i| &host[i..])
    };
    let port_ok = port_part.is_empty()
        || (port_part.starts_with(':') && port_part[1..].bytes().all(|b| b.is_ascii_digit()));
    if !port_ok {
        return Err(format!("invalid port {} after host", go_quote(port_part)));
    }
    if let Some(bad) = host.chars().find(|c| !host_char_ok(*c)) {
        return Err(format!(
            "invalid character {} in host name",
            go_quote(&bad.to_string())
        ));
    }
    Ok(())
}

fn host_char_ok(c: char) -> bool {
    !c.is_ascii() || c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:[]<>\"%".contains(c)
}

/// Go's `%q` for the plain strings that appear in these messages.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub(crate) fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every expected message below is what etcd 3.4.23 printed for the same flag value
    // (`etcd --listen-client-urls=<value>`, measured on this machine).
    #[test]
    fn bad_urls_fail_with_etcds_messages() {
        let cases = [
            ("foo", "URL scheme must be http, https, unix, or unixs: foo"),
            (
                "http://localhost:2379/path",
                "URL must not contain a path: http://localhost:2379/path",
            ),
            (
                "ftp://127.0.0.1:1",
                "URL scheme must be http, https, unix, or unixs: ftp://127.0.0.1:1",
            ),
            (
                "http://127.0.0.1",
                "URL address does not have the form \"host:port\": http://127.0.0.1",
            ),
            (
                "http://[::1:2379",
                "parse \"http://[::1:2379\": missing ']' in host",
            ),
            (
                "127.0.0.1:2379",
                "parse \"127.0.0.1:2379\": first path segment in URL cannot contain colon",
            ),
            (
                "http://127.0.0.1:abc",
                "parse \"http://127.0.0.1:abc\": invalid port \":abc\" after host",
            ),
            ("", "URL scheme must be http, https, unix, or unixs: "),
        ];
        for (input, want) in cases {
            assert_eq!(EtcdUrl::parse(input), Err(want.to_owned()), "{input}");
        }
    }

    #[test]
    fn good_urls_round_trip_and_lists_sort() {
        let url = EtcdUrl::parse(" HTTP://[::1]:2379 ").expect("valid");
        assert_eq!(url.to_string(), "http://[::1]:2379");
        assert_eq!(url.hostname(), "::1");
        assert_eq!(url.port(), "2379");
        let list = parse_url_list("http://b:1,http://a:2,https://a:1").expect("valid");
        assert_eq!(join_urls(&list), "http://a:2,http://b:1,https://a:1");
        assert!(list[2].is_tls());
    }

    #[test]
    fn bind_and_host_checks_match_etcd() {
        let named = parse_url_list("http://example.com:2379").expect("valid");
        assert_eq!(
            check_bind_urls(&named),
            Err("expected IP in URL for binding (http://example.com:2379)".to_owned())
        );
        let ok = parse_url_list("http://localhost:1,http://0.0.0.0:2,http://[::]:3").expect("ok");
        assert_eq!(check_bind_urls(&ok), Ok(()));
        let empty_host = parse_url_list("http://:2379").expect("valid");
        assert_eq!(
            check_host_urls(&empty_host),
            Err("unexpected empty host (http://:2379)".to_owned())
        );
    }

    #[test]
    fn split_host_port_matches_go() {
        assert_eq!(split_host_port("a:1"), Ok(("a", "1")));
        assert_eq!(split_host_port("[::1]:1"), Ok(("::1", "1")));
        assert_eq!(split_host_port("a:"), Ok(("a", "")));
        assert!(split_host_port("a").is_err());
        assert!(split_host_port("a:b:1").is_err());
    }
}
