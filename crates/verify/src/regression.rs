//! The pages users visit: what each route answers, and when a new release's answer is a
//! regression against the live one (SPEC activate steps 2 and 6, `verify.routes`).
//!
//! A health route can answer 200 while the home page throws, so the routes are asked too. Only
//! a new failure counts: a route regresses when the live release answers it below 500 (or there
//! is no live answer to compare with) and the new release answers 500 or more, or nothing at
//! all. A route that already fails on the live release is not the new release's fault. Any
//! status is an answer: a 3xx or a 404 says the server is up and chose to say so.
//!
//! One exception: Next.js 16 with Cache Components answers a page that throws while rendering
//! with status 200 and its error document (`<html id="__next_error__">`, "Application error" in
//! the browser). That is a failure users see, whatever the status says.

use std::fmt;
use std::io::Read;
use std::thread;
use std::time::Duration;

use crate::error::{Error, Failure};
use crate::probe::{MAX_BODY_BYTES, agent, failure_from, validate_url};

/// What one GET of a route brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A whole response with this status.
    Status(u16),
    /// A whole response with this status whose body is Next.js's error document: the page
    /// threw while rendering.
    ErrorPage(u16),
    /// No whole response: refused, reset, timed out, not HTTP.
    NoAnswer(Failure),
}

/// What Next.js's error document carries: `<html id="__next_error__">`.
const NEXT_ERROR_MARK: &[u8] = b"id=\"__next_error__\"";

impl Answer {
    /// The answer of a whole response: its status, and whether its body is Next.js's error
    /// document.
    pub fn of_response(status: u16, body: &[u8]) -> Answer {
        if body
            .windows(NEXT_ERROR_MARK.len())
            .any(|window| window == NEXT_ERROR_MARK)
        {
            Answer::ErrorPage(status)
        } else {
            Answer::Status(status)
        }
    }

    /// Whether users would see an error: a status of 500 or more, an error page, or no answer
    /// at all.
    pub fn is_failure(&self) -> bool {
        match self {
            Answer::Status(status) => *status >= 500,
            Answer::ErrorPage(_) | Answer::NoAnswer(_) => true,
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Status(status) => write!(f, "{status}"),
            Answer::ErrorPage(status) => write!(f, "{status} with Next.js's error page"),
            Answer::NoAnswer(failure) => write!(f, "no answer ({failure})"),
        }
    }
}

/// What the new release is compared with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Baseline {
    /// The live release's answers, route by route, asked before anything changed. A route
    /// missing here has no live answer to compare with, so any failure of it regresses.
    Live(Vec<(String, Answer)>),
    /// Nothing is live (the first activation): any failure regresses.
    #[default]
    NothingLive,
}

impl Baseline {
    /// The live release's answer for `route`, if it was asked.
    pub fn answer_for(&self, route: &str) -> Option<&Answer> {
        match self {
            Baseline::Live(answers) => answers
                .iter()
                .find(|(asked, _)| asked == route)
                .map(|(_, answer)| answer),
            Baseline::NothingLive => None,
        }
    }
}

/// The routes to ask a release for, and what to compare its answers with. The default checks
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteChecks {
    /// Paths, each starting with `/`, perhaps with a query; asked in this order.
    pub paths: Vec<String>,
    /// The live release's answers for them.
    pub baseline: Baseline,
}

impl RouteChecks {
    /// No route to check.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether there is no route to check.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// A route that the live release serves and the new one does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regression {
    /// The route.
    pub route: String,
    /// The live release's status for it, below 500; `None`: no live answer to compare with.
    pub live: Option<u16>,
    /// The new release's answer: 500 or more, or no answer.
    pub new: Answer,
}

/// A route that fails on the new release and already failed on the live one: not a
/// regression, but worth telling the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlreadyFailing {
    /// The route.
    pub route: String,
    /// The live release's answer: 500 or more, or no answer.
    pub live: Answer,
    /// The new release's answer: 500 or more, or no answer.
    pub new: Answer,
}

/// Where an app listens: `http://host[:port]`, without a path. Routes are appended to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    /// The origin of a plain `http://` URL (see [`validate_url`]), e.g. the probe's URL
    /// `http://127.0.0.1:3000/api/health` gives `http://127.0.0.1:3000`.
    pub fn of(url: &str) -> Result<Self, Error> {
        validate_url(url)?;
        // A valid URL has a scheme, and its authority ends at the path or query.
        let authority_start = url.find("://").map_or(0, |at| at + 3);
        let authority_end = url[authority_start..]
            .find(['/', '?'])
            .map_or(url.len(), |at| authority_start + at);
        Ok(Self(url[..authority_end].to_owned()))
    }

    /// The origin as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// GETs `origin` + route for each route, each try bounded by `timeout`, with the probe's
/// client (no redirect followed, no proxy, a fresh connection); returns each route with its
/// answer, in the order given.
///
/// Up to ten routes are asked at once, so a round takes about one `timeout` for
/// a few hanging pages, not one each. The body is read (up to 1 MiB, then the connection is
/// dropped) so that a page that sends its head and then dies or hangs mid-render, as a
/// streamed page can, counts as no answer.
pub fn check_routes(
    origin: &Origin,
    routes: &[String],
    timeout: Duration,
) -> Vec<(String, Answer)> {
    let asked: Vec<&str> = routes.iter().map(String::as_str).collect();
    routes
        .iter()
        .cloned()
        .zip(ask_all(origin, &asked, timeout))
        .collect()
}

/// How many routes are asked at once: enough that `verify.routes` at its limit of 20 takes
/// two rounds, few enough that a small app is not flooded.
pub(crate) const PARALLEL_TRIES: usize = 10;

/// The routes of `answers` that regress against `baseline`, in the order of `answers`.
pub fn regressions(baseline: &Baseline, answers: &[(String, Answer)]) -> Vec<Regression> {
    answers
        .iter()
        .filter_map(|(route, new)| regression(baseline, route, new))
        .collect()
}

/// The routes of `answers` that fail, and already failed on the live release.
pub fn already_failing(baseline: &Baseline, answers: &[(String, Answer)]) -> Vec<AlreadyFailing> {
    answers
        .iter()
        .filter(|(_, new)| new.is_failure())
        .filter_map(|(route, new)| {
            let live = baseline
                .answer_for(route)
                .filter(|live| live.is_failure())?;
            Some(AlreadyFailing {
                route: route.clone(),
                live: live.clone(),
                new: new.clone(),
            })
        })
        .collect()
}

fn regression(baseline: &Baseline, route: &str, new: &Answer) -> Option<Regression> {
    if !new.is_failure() {
        return None;
    }
    let live = match baseline.answer_for(route) {
        Some(Answer::Status(status)) if *status < 500 => Some(*status),
        Some(_) => return None,
        None => None,
    };
    Some(Regression {
        route: route.to_owned(),
        live,
        new: new.clone(),
    })
}

/// What the routes of a live app must prove after the roll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteProbeSpec {
    /// The live app, e.g. the origin of the probe's URL.
    pub origin: Origin,
    /// The routes, and what the previous release answered for them before the roll.
    pub routes: RouteChecks,
    /// How many times a regressing route is asked at most; 0 is treated as 1.
    pub attempts: u32,
    /// The pause before a regressing route is asked again.
    pub interval: Duration,
    /// The bound of one try.
    pub timeout: Duration,
}

/// Asks every route of `spec.routes` on `spec.origin`, then asks the regressing ones again,
/// `spec.interval` apart, until none regresses or each was asked `spec.attempts` times.
///
/// Returns the last answer of every route, failures that are not regressions included (see
/// [`already_failing`]); a route that still regresses fails it with [`Error::RouteProbe`].
pub fn probe_routes(spec: &RouteProbeSpec) -> Result<Vec<(String, Answer)>, Error> {
    let attempts = spec.attempts.max(1);
    let mut made = 1;
    let (answers, regressed) = settle(
        &spec.origin,
        &spec.routes,
        spec.timeout,
        spec.interval,
        || {
            made += 1;
            made <= attempts
        },
    );
    match regressed.split_first() {
        None => Ok(answers),
        Some((first, rest)) => Err(Error::RouteProbe {
            route: first.route.clone(),
            live: first.live,
            new: first.new.clone(),
            attempts: made.min(attempts),
            also: rest.iter().map(|other| other.route.clone()).collect(),
        }),
    }
}

/// Asks every route, then, while some regress and `again()` allows one more round, waits
/// `interval` and asks those again. Returns the last answer of every route and the
/// regressions among them.
pub(crate) fn settle(
    origin: &Origin,
    checks: &RouteChecks,
    timeout: Duration,
    interval: Duration,
    mut again: impl FnMut() -> bool,
) -> (Vec<(String, Answer)>, Vec<Regression>) {
    let mut answers = check_routes(origin, &checks.paths, timeout);
    loop {
        let regressed = regressions(&checks.baseline, &answers);
        if regressed.is_empty() || !again() {
            return (answers, regressed);
        }
        thread::sleep(interval);
        // Only the regressing routes are asked again: the others have proven themselves.
        let mut stale: Vec<&mut (String, Answer)> = answers
            .iter_mut()
            .filter(|(route, answer)| regression(&checks.baseline, route, answer).is_some())
            .collect();
        let routes: Vec<&str> = stale.iter().map(|(route, _)| route.as_str()).collect();
        let fresh = ask_all(origin, &routes, timeout);
        for (entry, answer) in stale.iter_mut().zip(fresh) {
            entry.1 = answer;
        }
    }
}

/// Asks every route, [`PARALLEL_TRIES`] at a time; the answers come back in the routes' order.
fn ask_all(origin: &Origin, routes: &[&str], timeout: Duration) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(routes.len());
    for batch in routes.chunks(PARALLEL_TRIES) {
        thread::scope(|scope| {
            let asking: Vec<_> = batch
                .iter()
                .map(|route| scope.spawn(move || ask(origin, route, timeout)))
                .collect();
            for pending in asking {
                answers.push(pending.join().unwrap_or_else(|_| {
                    Answer::NoAnswer(Failure::Connection {
                        detail: "the try panicked".to_owned(),
                    })
                }));
            }
        });
    }
    answers
}

fn ask(origin: &Origin, route: &str, timeout: Duration) -> Answer {
    // Without its `/`, `pricing` after `http://app` would name the host `apppricing`.
    if !route.starts_with('/') {
        return Answer::NoAnswer(Failure::InvalidUrl {
            reason: format!("route `{route}` does not start with `/`"),
        });
    }
    let url = format!("{origin}{route}");
    if let Err(error) = validate_url(&url) {
        let reason = match error {
            Error::InvalidUrl { reason, .. } => reason,
            other => other.to_string(),
        };
        return Answer::NoAnswer(Failure::InvalidUrl { reason });
    }
    let response = match agent(timeout).get(&url).call() {
        Ok(response) => response,
        Err(error) => return Answer::NoAnswer(failure_from(error, &url, timeout)),
    };
    let status = response.status().as_u16();
    let mut body = Vec::new();
    match response
        .into_body()
        .into_reader()
        .take(MAX_BODY_BYTES as u64)
        .read_to_end(&mut body)
    {
        Ok(_) => Answer::of_response(status, &body),
        Err(error) => Answer::NoAnswer(failure_from(ureq::Error::from(error), &url, timeout)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;

    fn status(code: u16) -> Answer {
        Answer::Status(code)
    }

    fn answers(list: &[(&str, Answer)]) -> Vec<(String, Answer)> {
        list.iter()
            .map(|(route, answer)| ((*route).to_owned(), answer.clone()))
            .collect()
    }

    fn paths(list: &[&str]) -> Vec<String> {
        list.iter().map(|path| (*path).to_owned()).collect()
    }

    const REFUSED: Answer = Answer::NoAnswer(Failure::Refused);

    #[test]
    fn nextjs_error_pages_are_failures_whatever_their_status() {
        let page = b"<!DOCTYPE html><html id=\"__next_error__\"><head>";
        assert_eq!(Answer::of_response(200, page), Answer::ErrorPage(200));
        assert!(Answer::ErrorPage(200).is_failure());
        assert_eq!(
            Answer::ErrorPage(200).to_string(),
            "200 with Next.js's error page"
        );
        assert_eq!(
            Answer::of_response(200, b"<html id=\"__next\">"),
            status(200)
        );
        let baseline = Baseline::Live(answers(&[("/", status(200))]));
        let found = regressions(&baseline, &answers(&[("/", Answer::ErrorPage(200))]));
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn a_new_failure_where_the_live_release_serves_regresses() {
        let baseline = Baseline::Live(answers(&[
            ("/", status(200)),
            ("/old", status(301)),
            ("/gone", status(404)),
            ("/broken", status(500)),
            ("/down", REFUSED),
        ]));
        let new = answers(&[
            ("/", status(500)),
            ("/old", REFUSED),
            ("/gone", status(404)),
            ("/broken", status(502)),
            ("/down", REFUSED),
            ("/fine", status(200)),
            ("/unasked", status(503)),
        ]);
        assert_eq!(
            regressions(&baseline, &new),
            [
                Regression {
                    route: "/".to_owned(),
                    live: Some(200),
                    new: status(500)
                },
                Regression {
                    route: "/old".to_owned(),
                    live: Some(301),
                    new: REFUSED
                },
                Regression {
                    route: "/unasked".to_owned(),
                    live: None,
                    new: status(503)
                },
            ]
        );
        assert_eq!(
            already_failing(&baseline, &new),
            [
                AlreadyFailing {
                    route: "/broken".to_owned(),
                    live: status(500),
                    new: status(502)
                },
                AlreadyFailing {
                    route: "/down".to_owned(),
                    live: REFUSED,
                    new: REFUSED
                },
            ]
        );
    }

    #[test]
    fn with_nothing_live_every_failure_regresses() {
        let new = answers(&[
            ("/", status(499)),
            ("/a", status(500)),
            ("/b", REFUSED),
            ("/c", status(302)),
        ]);
        let regressed: Vec<_> = regressions(&Baseline::NothingLive, &new)
            .into_iter()
            .map(|regression| (regression.route, regression.live))
            .collect();
        assert_eq!(
            regressed,
            [("/a".to_owned(), None), ("/b".to_owned(), None)]
        );
        assert!(already_failing(&Baseline::NothingLive, &new).is_empty());
    }

    #[test]
    fn a_new_release_that_fixes_a_page_is_no_regression() {
        let baseline = Baseline::Live(answers(&[("/", status(500))]));
        let new = answers(&[("/", status(200))]);
        assert!(regressions(&baseline, &new).is_empty());
        assert!(already_failing(&baseline, &new).is_empty());
    }

    #[test]
    fn answers_read_as_statuses_or_their_failure() {
        assert_eq!(status(503).to_string(), "503");
        assert_eq!(REFUSED.to_string(), "no answer (connection refused)");
        assert!(status(500).is_failure());
        assert!(!status(499).is_failure());
        assert!(REFUSED.is_failure());
    }

    #[test]
    fn the_origin_of_a_url_drops_its_path() {
        for (url, origin) in [
            ("http://127.0.0.1:3000/api/health", "http://127.0.0.1:3000"),
            ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
            ("http://localhost?x=1", "http://localhost"),
            ("http://[::1]:8080/", "http://[::1]:8080"),
        ] {
            assert_eq!(Origin::of(url).unwrap().as_str(), origin, "{url}");
        }
        assert!(matches!(
            Origin::of("https://127.0.0.1/"),
            Err(Error::InvalidUrl { .. })
        ));
    }

    /// Reads a request head and returns its path.
    fn read_path(stream: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        let head = String::from_utf8_lossy(&head);
        head.split(' ').nth(1).unwrap_or_default().to_owned()
    }

    fn response(status: &str) -> Vec<u8> {
        format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .into_bytes()
    }

    /// Serves every connection on its own thread; `answer(path, n)` gives the raw bytes for
    /// the n-th request (from 0), `None` to hold the connection open and say nothing.
    fn serve(
        answer: impl Fn(&str, usize) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> (Origin, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = Origin::of(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&served);
        let answer = Arc::new(answer);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let answer = Arc::clone(&answer);
                thread::spawn(move || {
                    let path = read_path(&mut stream);
                    match answer(&path, n) {
                        // The client may hang up early: that is its right.
                        Some(bytes) => drop(stream.write_all(&bytes)),
                        None => {
                            let mut sink = Vec::new();
                            let _ = stream.read_to_end(&mut sink);
                        }
                    }
                });
            }
        });
        (origin, served)
    }

    #[test]
    fn every_status_is_an_answer_and_silence_is_not() {
        let (origin, _) = serve(|path, _| match path {
            "/" => Some(response("200 OK")),
            "/old" => Some(response("308 Permanent Redirect")),
            "/gone" => Some(response("404 Not Found")),
            "/broken" => Some(response("500 Internal Server Error")),
            "/cut" => Some(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial".to_vec()),
            "/junk" => Some(b"\x00\x01 not http\r\n\r\n".to_vec()),
            _ => None,
        });
        let started = Instant::now();
        let answered = check_routes(
            &origin,
            &paths(&[
                "/",
                "/old",
                "/gone",
                "/broken",
                "/cut",
                "/junk",
                "/hang",
                "/hang?again=1",
            ]),
            Duration::from_millis(400),
        );
        // The two hanging routes were asked at once.
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        let routes: Vec<&str> = answered.iter().map(|(route, _)| route.as_str()).collect();
        assert_eq!(
            routes,
            [
                "/",
                "/old",
                "/gone",
                "/broken",
                "/cut",
                "/junk",
                "/hang",
                "/hang?again=1"
            ]
        );
        assert_eq!(answered[0].1, status(200));
        assert_eq!(answered[1].1, status(308));
        assert_eq!(answered[2].1, status(404));
        assert_eq!(answered[3].1, status(500));
        assert!(
            matches!(answered[4].1, Answer::NoAnswer(Failure::Closed { .. })),
            "{:?}",
            answered[4].1
        );
        assert!(
            matches!(answered[5].1, Answer::NoAnswer(Failure::NotHttp { .. })),
            "{:?}",
            answered[5].1
        );
        for (_, answer) in &answered[6..] {
            assert_eq!(
                *answer,
                Answer::NoAnswer(Failure::TimedOut { after_ms: 400 })
            );
        }
    }

    #[test]
    fn a_route_without_its_slash_is_not_sent_elsewhere() {
        let (origin, served) = serve(|_, _| Some(response("200 OK")));
        let answered = check_routes(
            &origin,
            &paths(&["pricing", "/a b"]),
            Duration::from_secs(1),
        );
        for (_, answer) in &answered {
            assert!(
                matches!(answer, Answer::NoAnswer(Failure::InvalidUrl { .. })),
                "{answer:?}"
            );
        }
        assert_eq!(served.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_refused_connection_is_no_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = Origin::of(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        assert_eq!(
            check_routes(&origin, &paths(&["/"]), Duration::from_secs(1)),
            answers(&[("/", REFUSED)])
        );
    }

    fn probe_spec(origin: Origin, routes: &[&str], baseline: Baseline) -> RouteProbeSpec {
        RouteProbeSpec {
            origin,
            routes: RouteChecks {
                paths: paths(routes),
                baseline,
            },
            attempts: 5,
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn the_probe_asks_a_regressing_route_again_and_only_it() {
        // `/` fails on its first two requests; `/about` always passes.
        let home_asked = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&home_asked);
        let (origin, served) = serve(move |path, _| match path {
            "/" if counter.fetch_add(1, Ordering::SeqCst) < 2 => {
                Some(response("500 Internal Server Error"))
            }
            _ => Some(response("200 OK")),
        });
        let spec = probe_spec(origin, &["/", "/about"], Baseline::NothingLive);
        let answered = probe_routes(&spec).unwrap();
        assert_eq!(
            answered,
            answers(&[("/", status(200)), ("/about", status(200))])
        );
        assert_eq!(home_asked.load(Ordering::SeqCst), 3);
        assert_eq!(served.load(Ordering::SeqCst), 4, "`/about` was asked again");
    }

    #[test]
    fn the_probe_gives_up_after_its_attempts_naming_the_first_route() {
        let (origin, served) = serve(|path, _| match path {
            "/" | "/pricing" => Some(response("502 Bad Gateway")),
            _ => Some(response("200 OK")),
        });
        let mut spec = probe_spec(
            origin,
            &["/", "/about", "/pricing"],
            Baseline::Live(answers(&[
                ("/", status(200)),
                ("/about", status(200)),
                ("/pricing", status(200)),
            ])),
        );
        spec.attempts = 3;
        let error = probe_routes(&spec).unwrap_err();
        assert_eq!(
            error.to_string(),
            "route `/` answered 502 on the new release after 3 attempts (the previous release answered 200); `/pricing` regressed too"
        );
        assert_eq!(served.load(Ordering::SeqCst), 3 + 2 + 2);

        spec.attempts = 0;
        spec.routes.baseline = Baseline::NothingLive;
        let error = probe_routes(&spec).unwrap_err();
        assert!(
            matches!(error, Error::RouteProbe { attempts: 1, .. }),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("after 1 attempt (no answer from before the roll to compare with)"),
            "{error}"
        );
    }

    #[test]
    fn the_probe_passes_with_a_page_that_already_failed() {
        let (origin, served) = serve(|_, _| Some(response("500 Internal Server Error")));
        let spec = probe_spec(
            origin,
            &["/"],
            Baseline::Live(answers(&[("/", status(500))])),
        );
        assert_eq!(probe_routes(&spec).unwrap(), answers(&[("/", status(500))]));
        assert_eq!(
            served.load(Ordering::SeqCst),
            1,
            "a tolerated failure was retried"
        );
    }

    #[test]
    fn more_routes_than_one_batch_keep_their_order() {
        let (origin, _) = serve(|path, _| {
            let code = path.trim_start_matches("/p").parse::<u16>().unwrap_or(0) + 200;
            Some(response(&format!("{code} Whatever")))
        });
        let routes: Vec<String> = (0..25).map(|n| format!("/p{n}")).collect();
        let answered = check_routes(&origin, &routes, Duration::from_secs(2));
        for (n, (route, answer)) in answered.iter().enumerate() {
            assert_eq!(*route, format!("/p{n}"));
            assert_eq!(*answer, status(200 + u16::try_from(n).unwrap()));
        }
    }
}
