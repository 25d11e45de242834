//! `kubectl exec` and `kubectl attach` at the kubelet endpoint: `GET /exec/{namespace}/{pod}/{container}?command=
//! ...&stdin=&stdout=&stderr=&tty=` and `GET /attach/{namespace}/{pod}/{container}?stdin=&stdout=&stderr=&tty=`,
//! upgraded to a WebSocket speaking `v5.channel.k8s.io` or `v4.channel.k8s.io` (what the API server relays from
//! kubectl, unchanged). An attach joins the container's own streams: its main process's output, and its stdin
//! when the container was created with `stdin: true`.
//!
//! The protocol: binary messages whose first byte is the channel. 0 stdin (client to server), 1 stdout, 2 stderr,
//! 3 the outcome as a `metav1.Status` (sent once, last), 4 a terminal resize (`{"Width":..,"Height":..}`), and
//! with v5, 255 closes a stream (its payload the channel: `[255, 0]` is the end of stdin).
//!
//! Invariants:
//! - The command is started before the upgrade is answered, so a container that is not running, or a command
//!   that cannot start, is refused with a plain 400 the API server turns into a Status.
//! - The session ends when the command's output has ended: its exit code is sent on channel 3 (`Success`, or
//!   `NonZeroExitCode` with the code as a cause, which kubectl exits with) and the socket is closed. A client
//!   that goes away ends the relay of its input; the command runs on to its end (Docker cannot stop it). An
//!   attach ends with `Success` when the container's output ends (it exited), as upstream's kubelet ends it.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::agent::runtime::{ExecRequest, ExecSession};

/// The subprotocols served, most preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Which session a request opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// Runs a command in the container (`pods/exec`).
    Exec,
    /// Joins the container's own streams (`pods/attach`).
    Attach,
}

/// What an exec or attach request's query asks for: the command (an exec's; an attach has none), and whether
/// stdout and stderr are wanted; refused (with upstream's words) when an exec names no command, or when no
/// stream is asked for.
pub fn parse_query(query: &str, session: Session) -> Result<(ExecRequest, bool, bool), String> {
    let mut request = ExecRequest::default();
    let (mut stdout, mut stderr) = (false, false);
    for (key, value) in super::query_pairs(query) {
        let flag = || super::parse_bool(&value).ok_or_else(|| format!("invalid value {value:?} for {key}"));
        match key.as_str() {
            "command" => request.command.push(value.clone()),
            "stdin" => request.stdin = flag()?,
            "stdout" => stdout = flag()?,
            "stderr" => stderr = flag()?,
            "tty" => request.tty = flag()?,
            _ => {}
        }
    }
    match session {
        Session::Exec if request.command.is_empty() => {
            return Err("you must specify at least 1 command".to_owned());
        }
        Session::Attach => request.command.clear(),
        Session::Exec => {}
    }
    if !request.stdin && !stdout && !stderr {
        return Err("you must specify at least one of stdin, stdout, stderr".to_owned());
    }
    Ok((request, stdout, stderr))
}

/// The subprotocol to answer with: the most preferred of those the client offers.
pub fn choose_protocol(offered: &str) -> Option<&'static str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    PROTOCOLS.into_iter().find(|p| offered.contains(p))
}

/// The channel-3 message that ends a session.
pub fn outcome(exit: &Result<i32, String>) -> Bytes {
    let status = match exit {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(message) => json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"}),
    };
    let mut frame = vec![ERROR];
    frame.extend_from_slice(&serde_json::to_vec(&status).unwrap_or_default());
    Bytes::from(frame)
}

/// Relays `session` over the upgraded connection until the command has ended.
pub async fn relay(upgraded: hyper::upgrade::Upgraded, session: ExecSession, v5: bool, stdout: bool, stderr: bool) {
    let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    let (mut sink, mut incoming) = socket.split();
    let ExecSession { mut output, stdin, exit, resize } = session;
    let input = async move {
        let mut stdin = stdin;
        while let Some(Ok(message)) = incoming.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            match data.first().copied() {
                Some(STDIN) => {
                    let Some(writer) = stdin.as_mut() else { continue };
                    if writer.write_all(&data[1..]).await.is_err() || writer.flush().await.is_err() {
                        stdin = None;
                    }
                }
                Some(RESIZE) => {
                    let size: serde_json::Value = serde_json::from_slice(&data[1..]).unwrap_or_default();
                    let dimension = |key: &str| size[key].as_u64().and_then(|v| u16::try_from(v).ok());
                    if let (Some(resize), Some(width), Some(height)) =
                        (&resize, dimension("Width"), dimension("Height"))
                    {
                        resize(width, height).await;
                    }
                }
                Some(CLOSE) if v5 && data.get(1) == Some(&STDIN) => {
                    if let Some(mut writer) = stdin.take() {
                        let _ = writer.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    };
    let input = tokio::spawn(input);
    while let Some((channel, data)) = output.next().await {
        let wanted = (channel == crate::agent::runtime::STDOUT && stdout)
            || (channel == crate::agent::runtime::STDERR && stderr);
        if !wanted {
            continue;
        }
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.push(channel);
        frame.extend_from_slice(&data);
        if sink.send(Message::Binary(Bytes::from(frame))).await.is_err() {
            break;
        }
    }
    let exit = exit.await.map_err(|e| e.to_string());
    let _ = sink.send(Message::Binary(outcome(&exit))).await;
    // A normal closure: kubectl takes a close without a code for a broken stream.
    let normal = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    let _ = sink.send(Message::Close(Some(normal))).await;
    let _ = sink.close().await;
    input.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_name_the_command_and_its_streams() {
        let (request, stdout, stderr) = parse_query(
            "command=sh&command=-c&command=exit+3&stdin=true&stdout=true&stderr=false&tty=1",
            Session::Exec,
        )
        .unwrap();
        assert_eq!(request.command, ["sh", "-c", "exit 3"]);
        assert!(request.stdin && request.tty && stdout && !stderr);
        assert!(parse_query("stdout=true", Session::Exec).unwrap_err().contains("at least 1 command"));
        let no_stream = parse_query("command=ls", Session::Exec).unwrap_err();
        assert!(no_stream.contains("at least one of stdin, stdout, stderr"));
        assert!(parse_query("command=ls&stdout=maybe", Session::Exec).is_err());
    }

    #[test]
    fn an_attach_needs_a_stream_but_no_command() {
        let (request, stdout, stderr) = parse_query("stdin=true&stdout=true&stderr=true", Session::Attach).unwrap();
        assert!(request.command.is_empty() && request.stdin && stdout && stderr);
        let no_stream = parse_query("tty=true", Session::Attach).unwrap_err();
        assert!(no_stream.contains("at least one of stdin, stdout, stderr"));
    }

    #[test]
    fn the_newest_offered_protocol_is_chosen() {
        assert_eq!(choose_protocol("v4.channel.k8s.io, v5.channel.k8s.io"), Some("v5.channel.k8s.io"));
        assert_eq!(choose_protocol("v4.channel.k8s.io"), Some("v4.channel.k8s.io"));
        assert_eq!(choose_protocol("channel.k8s.io"), None);
    }

    #[test]
    fn the_outcome_carries_the_exit_code_as_kubectl_reads_it() {
        let status: serde_json::Value = serde_json::from_slice(&outcome(&Ok(3))[1..]).unwrap();
        assert_eq!(outcome(&Ok(3))[0], ERROR);
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));
        let ok: serde_json::Value = serde_json::from_slice(&outcome(&Ok(0))[1..]).unwrap();
        assert_eq!(ok["status"], "Success");
    }
}
