//! `search`, as podman's does it for registries other than Docker Hub:
//! the repositories of a registry's catalog (GET /v2/_catalog, page after
//! page) whose names hold the term, and the tags of one repository (GET
//! /v2/NAME/tags/list). Requests go through the one registry client, so
//! TLS, certs.d, `--tls-verify`, registries.conf's `insecure` and the
//! credentials are those of a pull.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use crate::client::{self, RegistryClient, TransportOptions};
use crate::error::{Error, Result};
use crate::reference::{self, DOCKER_HUB};
use crate::registries::RegistriesConf;

/// podman's default limit, per registry searched.
pub const DEFAULT_LIMIT: usize = 25;

/// Pages of a catalog or tag list followed at most: a registry whose
/// `Link`s never end must not hold a search forever. At docker-registry's
/// 100 names a page this is a million repositories.
const MAX_PAGES: usize = 10_000;

/// A catalog page or a tag list is a list of names; more than this is no
/// registry's answer.
const MAX_PAGE: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub transport: TransportOptions,
    pub registries: RegistriesConf,
    /// Most results per registry (0: `DEFAULT_LIMIT`).
    pub limit: usize,
}

/// A repository found: the registry it is in, and its full name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub registry: String,
    pub name: String,
}

/// One repository's tags, in the registry's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tags {
    pub registry: String,
    pub name: String,
    pub tags: Vec<String>,
}

/// What a search over several registries gave: the results, and the
/// registries that failed while others answered (each error names its
/// registry). When every registry fails, the search is an error.
#[derive(Debug)]
pub struct Outcome<T> {
    pub results: Vec<T>,
    pub failures: Vec<Error>,
}

impl<T> Default for Outcome<T> {
    fn default() -> Self {
        Outcome {
            results: Vec::new(),
            failures: Vec::new(),
        }
    }
}

/// The registries `term` is searched in, each with the term to look for
/// there: a term naming its registry (`HOST[:PORT]/TERM`, docker's rule
/// for a registry part) searches that one, with `HOST/` alone listing
/// its whole catalog; any other, each unqualified-search registry of
/// registries.conf.
pub fn targets(term: &str, conf: &RegistriesConf) -> Result<Vec<(String, String)>> {
    if let Some((registry, rest)) = reference::split_registry(term) {
        return Ok(vec![(registry.to_string(), rest.to_string())]);
    }
    let registries = conf.search_registries();
    if registries.is_empty() {
        return Err(Error::ShortName(format!(
            "{term:?} names no registry and no unqualified-search registries are defined in {:?}: search HOST/{term}",
            conf.origin.display().to_string()
        )));
    }
    Ok(registries
        .into_iter()
        .map(|r| (r, term.to_string()))
        .collect())
}

/// The client for `registry`, as registries.conf and the options say.
fn client_for(registry: &str, opts: &SearchOptions) -> Result<RegistryClient> {
    let (insecure, blocked) = opts.registries.host_policy(registry);
    if blocked {
        return Err(Error::registry(registry, "blocked by registries.conf"));
    }
    if registry == DOCKER_HUB {
        // podman searches Docker Hub through its v1 search API, not the
        // catalog, which Docker Hub does not serve to anyone.
        return Err(Error::registry(
            registry,
            "Docker Hub does not serve the registry catalog (/v2/_catalog) that berth searches; search a registry that does, as HOST/TERM",
        ));
    }
    RegistryClient::new(registry, insecure, "", &opts.transport)
}

/// The registry's catalog: repositories whose names hold `term` (all of
/// them for an empty term), in the catalog's order, at most `limit`.
pub async fn search_registry(
    registry: &str,
    term: &str,
    opts: &SearchOptions,
) -> Result<Vec<Found>> {
    let client = client_for(registry, opts)?;
    let limit = limit(opts);
    let mut found = Vec::new();
    let scopes = ["registry:catalog:*".to_string()];
    let mut path = Some("/v2/_catalog".to_string());
    let mut pages = 0;
    while let Some(p) = path.take() {
        if found.len() >= limit {
            break;
        }
        let (body, next) = get_page(&client, &p, &scopes, "the catalog", &mut pages).await?;
        #[derive(serde::Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Vec<String>,
        }
        let page: Catalog = serde_json::from_slice(&body)
            .map_err(|e| Error::registry(registry, format!("GET {p}: not a catalog: {e}")))?;
        found.extend(
            page.repositories
                .into_iter()
                .filter(|r| r.contains(term))
                .take(limit - found.len())
                .map(|r| Found {
                    registry: registry.to_string(),
                    name: format!("{registry}/{r}"),
                }),
        );
        path = next;
    }
    Ok(found)
}

/// The tags of the repository `name` (`REPO[:TAG]`, the tag ignored) in
/// `registry`, in the registry's order, at most `limit`.
pub async fn registry_tags(registry: &str, name: &str, opts: &SearchOptions) -> Result<Tags> {
    let parsed = reference::parse(&format!("{registry}/{name}"))?;
    let repo = parsed.reference.repository.clone();
    let client = client_for(registry, opts)?;
    let scopes = [client::scope(&repo, "pull")];
    let limit = limit(opts);
    let mut tags = Vec::new();
    let mut path = Some(format!("/v2/{repo}/tags/list"));
    let mut pages = 0;
    let what = format!("the tags of {repo}");
    while let Some(p) = path.take() {
        if tags.len() >= limit {
            break;
        }
        let (body, next) = get_page(&client, &p, &scopes, &what, &mut pages).await?;
        #[derive(serde::Deserialize)]
        struct List {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let page: List = serde_json::from_slice(&body)
            .map_err(|e| Error::registry(registry, format!("GET {p}: not a tag list: {e}")))?;
        let page = page.tags.unwrap_or_default();
        tags.extend(page.into_iter().take(limit - tags.len()));
        path = next;
    }
    Ok(Tags {
        registry: registry.to_string(),
        name: format!("{registry}/{repo}"),
        tags,
    })
}

/// `search TERM`: each registry the term names (`targets`), searched in
/// turn.
pub async fn search(term: &str, opts: &SearchOptions) -> Result<Outcome<Found>> {
    let mut out = Outcome::default();
    for (registry, t) in targets(term, &opts.registries)? {
        match search_registry(&registry, &t, opts).await {
            Ok(found) => out.results.extend(found),
            Err(e) => out.failures.push(e),
        }
    }
    settle(out)
}

/// `search --list-tags NAME`: the repository's tags in each registry the
/// name names. A name without a registry is looked for in each search
/// registry, as a pull would.
pub async fn list_tags(name: &str, opts: &SearchOptions) -> Result<Outcome<Tags>> {
    let mut out = Outcome::default();
    for (registry, repo) in targets(name, &opts.registries)? {
        if repo.is_empty() {
            return Err(Error::invalid(
                format!("--list-tags {name}"),
                "name a repository, as HOST/REPOSITORY",
            ));
        }
        match registry_tags(&registry, &repo, opts).await {
            Ok(t) => out.results.push(t),
            Err(e) => out.failures.push(e),
        }
    }
    settle(out)
}

/// Failures alone are the search's error (the first, the others after it
/// on their own lines: each names its registry).
fn settle<T>(mut out: Outcome<T>) -> Result<Outcome<T>> {
    if out.results.is_empty() && !out.failures.is_empty() {
        let first = out.failures.remove(0);
        if out.failures.is_empty() {
            return Err(first);
        }
        let rest: Vec<String> = out.failures.iter().map(|e| e.to_string()).collect();
        return Err(Error::invalid(
            "search",
            format!("{first}\n{}", rest.join("\n")),
        ));
    }
    Ok(out)
}

fn limit(opts: &SearchOptions) -> usize {
    if opts.limit == 0 {
        DEFAULT_LIMIT
    } else {
        opts.limit
    }
}

/// One page: its body and the path of the next, from its `Link` header.
/// A refusal says what the registry would not give and why.
async fn get_page(
    client: &RegistryClient,
    path: &str,
    scopes: &[String],
    what: &str,
    pages: &mut usize,
) -> Result<(bytes::Bytes, Option<String>)> {
    *pages += 1;
    if *pages > MAX_PAGES {
        return Err(Error::registry(
            &client.host,
            format!("{what} runs past {MAX_PAGES} pages"),
        ));
    }
    let resp = client
        .send(Method::GET, path, HeaderMap::new(), None, scopes)
        .await?;
    let status = resp.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        let why = refusal(client, resp, path).await;
        return Err(Error::registry(
            &client.host,
            format!(
                "not allowed to read {what} ({why}); if it needs credentials, run `berth login {}`",
                client.host
            ),
        ));
    }
    if status == StatusCode::NOT_FOUND && path.starts_with("/v2/_catalog") {
        let why = refusal(client, resp, path).await;
        return Err(Error::registry(
            &client.host,
            format!("the registry does not serve its catalog ({why})"),
        ));
    }
    let resp = client.check(resp, &format!("{what}: GET {path}")).await?;
    let next = resp
        .headers()
        .get(reqwest::header::LINK)
        .and_then(|v| v.to_str().ok())
        .and_then(next_path);
    let body = client::read_limited(resp, MAX_PAGE, what)
        .await
        .map_err(|e| Error::registry(&client.host, e))?;
    Ok((body, next))
}

/// A refused request as the registry words it: "GET /v2/_catalog: 404
/// Not Found (NAME_UNKNOWN ...)".
async fn refusal(client: &RegistryClient, resp: reqwest::Response, path: &str) -> String {
    match client.check(resp, &format!("GET {path}")).await {
        Err(Error::Registry { why, .. }) => why,
        Err(e) => e.to_string(),
        Ok(r) => format!("GET {path}: {}", r.status()),
    }
}

/// The path and query of a `Link: <URL>; rel="next"` header. A full URL
/// gives only its path and query: the next page is asked of the same
/// registry, whose credentials go nowhere else.
fn next_path(link: &str) -> Option<String> {
    let (target, params) = link.split_once(';').unwrap_or((link, ""));
    if !params.contains("next") {
        return None;
    }
    let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    let path = match target.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => target,
    };
    path.starts_with("/v2/").then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_pages_stay_on_the_registry() {
        assert_eq!(
            next_path("</v2/_catalog?last=b&n=2>; rel=\"next\"").as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(
            next_path("<https://elsewhere.example/v2/_catalog?last=b>; rel=\"next\"").as_deref(),
            Some("/v2/_catalog?last=b")
        );
        assert_eq!(next_path("</v2/_catalog?last=b>; rel=\"prev\""), None);
        assert_eq!(
            next_path("<https://elsewhere.example/steal>; rel=\"next\""),
            None
        );
    }

    #[test]
    fn a_term_names_its_registry_or_searches_the_search_list() {
        let conf =
            RegistriesConf::parse("unqualified-search-registries = [\"a.example\", \"b:5000\"]\n")
                .unwrap();
        assert_eq!(
            targets("127.0.0.1:5000/busy", &conf).unwrap(),
            [("127.0.0.1:5000".to_string(), "busy".to_string())]
        );
        assert_eq!(
            targets("localhost/", &conf).unwrap(),
            [("localhost".to_string(), String::new())]
        );
        assert_eq!(
            targets("team/app", &conf).unwrap(),
            [
                ("a.example".to_string(), "team/app".to_string()),
                ("b:5000".to_string(), "team/app".to_string())
            ]
        );
        let none = RegistriesConf::parse("unqualified-search-registries = []\n").unwrap();
        assert!(
            targets("busybox", &none)
                .unwrap_err()
                .to_string()
                .contains("no unqualified-search registries")
        );
    }
}
