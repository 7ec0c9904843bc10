//! A [`RequestHandler`] for daemons whose state is owned by one loop: each request is
//! parsed into the daemon's own command type here, handed to the loop through a
//! channel, and answered when the loop replies.

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::server::RequestHandler;
use crate::wire::ReplyError;

/// Turns a method and its parameters into a daemon's command, or a reply error.
pub type ParseCommand<C> = fn(&str, Value) -> Result<C, ReplyError>;

/// A parsed request on its way to the daemon loop, with where to send the answer.
#[derive(Debug)]
pub struct Forwarded<C> {
    /// What is asked.
    pub command: C,
    /// The answer.
    pub reply: oneshot::Sender<Result<Value, ReplyError>>,
}

/// Parses, forwards to the daemon loop, waits for its answer.
#[derive(Debug)]
pub struct Forwarder<C> {
    daemon: &'static str,
    parse: ParseCommand<C>,
    requests: mpsc::Sender<Forwarded<C>>,
}

impl<C> Clone for Forwarder<C> {
    fn clone(&self) -> Self {
        Forwarder {
            daemon: self.daemon,
            parse: self.parse,
            requests: self.requests.clone(),
        }
    }
}

impl<C> Forwarder<C> {
    /// A handler for `daemon` (named in errors) that parses with `parse` and
    /// forwards to `requests`.
    pub fn new(
        daemon: &'static str,
        parse: ParseCommand<C>,
        requests: mpsc::Sender<Forwarded<C>>,
    ) -> Self {
        Forwarder {
            daemon,
            parse,
            requests,
        }
    }
}

impl<C: Send + 'static> RequestHandler for Forwarder<C> {
    async fn handle(&self, method: &str, params: Value) -> Result<Value, ReplyError> {
        let command = (self.parse)(method, params)?;
        let (reply, answer) = oneshot::channel();
        let gone = || ReplyError::failed(format!("{} is shutting down", self.daemon));
        self.requests
            .send(Forwarded { command, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: &str, _: Value) -> Result<String, ReplyError> {
        match method {
            "echo" => Ok("echo".into()),
            other => Err(ReplyError::method_not_found(other)),
        }
    }

    #[tokio::test]
    async fn forwards_parsed_commands_and_returns_the_loops_answer() {
        let (tx, mut rx) = mpsc::channel(4);
        let handler = Forwarder::new("testd", parse, tx);
        let daemon = tokio::spawn(async move {
            let request: Forwarded<String> = rx.recv().await.unwrap();
            let _ = request.reply.send(Ok(Value::String(request.command)));
        });
        assert_eq!(
            handler.handle("echo", Value::Null).await,
            Ok(Value::String("echo".into()))
        );
        daemon.await.unwrap();
        assert!(handler.handle("nope", Value::Null).await.is_err());
        // The loop is gone: the error names the daemon.
        let err = handler.handle("echo", Value::Null).await.unwrap_err();
        assert!(err.message.contains("testd is shutting down"), "{err:?}");
    }
}
