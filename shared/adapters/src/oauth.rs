//! The OAuth client-credentials session the Reltio and Salesforce clients share: where the credentials come from,
//! the token cached across invocations (one token request at a time), and every call sent with it through
//! `retry.rs`'s send loop, with the token forgotten and fetched anew once when the API refuses it. A client
//! says how to ask for its token and what its API's answers mean ([`Api`]); the session does the rest.

use crate::http;
use crate::retry::{send_with_retries, RetryPolicy, Retryable};
use crate::secrets::{SecretCache, SecretError};
use mdm_sync_domain::ports::remaining;
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Where a client's OAuth credentials (of shape `C`) come from.
pub enum CredentialSource<C> {
    /// Fixed credentials (tests, tools).
    Static(C),
    /// A Secrets Manager secret, read on first use and re-read after the token endpoint refuses it.
    Secret(SecretCache),
}

impl<C: DeserializeOwned + Clone> CredentialSource<C> {
    async fn get(&self) -> Result<C, SecretError> {
        match self {
            CredentialSource::Static(c) => Ok(c.clone()),
            CredentialSource::Secret(cache) => cache.get_json().await,
        }
    }

    /// The token endpoint refused the client: the secret is wrong or was rotated, so read it again next time
    /// rather than keep presenting the old one.
    async fn refused(&self) {
        if let CredentialSource::Secret(cache) = self {
            cache.invalidate().await;
        }
    }

    fn id(&self) -> &str {
        match self {
            CredentialSource::Static(_) => "(static credentials)",
            CredentialSource::Secret(cache) => cache.secret_id(),
        }
    }
}

/// The token endpoint's answer, as far as the clients read it.
#[derive(Deserialize)]
pub struct TokenAnswer {
    pub access_token: SecretString,
    pub expires_in: Option<u64>,
    pub instance_url: Option<String>,
}

/// A token to send calls with.
#[derive(Clone)]
pub struct Token {
    pub access_token: SecretString,
    /// Where the API is for this token (Salesforce's instance); `None` for an API at a fixed address.
    pub instance_url: Option<String>,
    /// When to stop using the token; `None`: until the API refuses it.
    pub refresh_at: Option<Instant>,
}

impl Token {
    /// The instance URL, or nothing for an API at a fixed address.
    pub fn instance_url(&self) -> &str {
        self.instance_url.as_deref().unwrap_or_default()
    }

    fn is_fresh(&self) -> bool {
        self.refresh_at.is_none_or(|at| Instant::now() < at)
    }
}

/// What a client tells the session about its API.
pub trait Api {
    /// The shape of the client's credentials (and of its secret).
    type Credentials: DeserializeOwned + Clone;
    /// The client's error: what the send loop retries, and one re-authentication on `is_unauthorized`.
    type Error: Retryable + From<http::Transport> + From<SecretError>;
    /// The API's name in logs.
    const NAME: &'static str;

    /// The token request for `credentials` (the session sets its timeout), or why the credentials cannot be
    /// used (a reason that never quotes them: the secret is reported malformed).
    fn token_request(
        &self,
        http: &reqwest::Client,
        credentials: &Self::Credentials,
    ) -> Result<RequestBuilder, String>;

    /// The token to cache from the token endpoint's answer, checked.
    fn token(&self, answer: TokenAnswer) -> Result<Token, Self::Error>;

    /// The error of a response that did not succeed, from its status, `Retry-After` and body. What it keeps of
    /// the body are codes, never message text (which can echo the values sent).
    fn error(status: StatusCode, retry_after: Option<Duration>, body: &str) -> Self::Error;

    /// The error to report when the token endpoint refused the client with `error` (not worth retrying now).
    fn refused(error: Self::Error) -> Self::Error;
}

/// An API's client-credentials session: the HTTP client, the credentials, the cached token and the retry policy.
pub struct Session<A: Api> {
    http: reqwest::Client,
    api: A,
    credentials: CredentialSource<A::Credentials>,
    token: Mutex<Option<Token>>,
    retry: RetryPolicy,
}

impl<A: Api> Session<A> {
    pub fn new(
        http: reqwest::Client,
        api: A,
        credentials: CredentialSource<A::Credentials>,
        retry: RetryPolicy,
    ) -> Self {
        Session {
            http,
            api,
            credentials,
            token: Mutex::new(None),
            retry,
        }
    }

    /// Sends the request `build` makes (given the HTTP client and the token) with the token as bearer, through
    /// the shared send loop: retried while worth it and time allows; a refused token is forgotten and one fresh
    /// token fetched.
    pub async fn send(
        &self,
        deadline: Instant,
        build: impl Fn(&reqwest::Client, &Token) -> RequestBuilder,
    ) -> Result<Response, A::Error> {
        send_with_retries(
            &self.retry,
            deadline,
            A::NAME,
            || self.try_once(deadline, &build),
            || async { *self.token.lock().await = None },
        )
        .await
    }

    async fn try_once(
        &self,
        deadline: Instant,
        build: &impl Fn(&reqwest::Client, &Token) -> RequestBuilder,
    ) -> Result<Response, A::Error> {
        let token = self.token(deadline).await?;
        let request = build(&self.http, &token);
        let response = http::send_bearer(request, &token.access_token, deadline).await?;
        checked::<A>(response).await
    }

    /// The cached token, or a new one. The lock is held while fetching so that concurrent requests wait for
    /// one token call instead of each making one (Reltio's token endpoint allows 10 requests/s).
    async fn token(&self, deadline: Instant) -> Result<Token, A::Error> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.is_fresh()) {
            return Ok(token.clone());
        }
        let fresh = self.fetch_token(deadline).await?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    async fn fetch_token(&self, deadline: Instant) -> Result<Token, A::Error> {
        let credentials = self.credentials.get().await?;
        let request = self
            .api
            .token_request(&self.http, &credentials)
            .map_err(|reason| SecretError::Malformed {
                id: self.credentials.id().to_owned(),
                reason,
            })?;
        let left = remaining(deadline);
        if left.is_zero() {
            return Err(http::Transport::Timeout.into());
        }
        let response = request
            .timeout(left.min(http::REQUEST_TIMEOUT))
            .send()
            .await
            .map_err(http::transport)?;
        let response = match checked::<A>(response).await {
            Ok(r) => r,
            Err(e) if e.retry_now() => return Err(e),
            Err(e) => {
                self.credentials.refused().await;
                return Err(A::refused(e));
            }
        };
        let answer: TokenAnswer = http::read_json(response).await?;
        self.api.token(answer)
    }
}

/// The response if it succeeded, else the API's error for it.
async fn checked<A: Api>(response: Response) -> Result<Response, A::Error> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = http::retry_after(&response);
    let body = response.text().await.unwrap_or_default();
    Err(A::error(status, retry_after, &body))
}
