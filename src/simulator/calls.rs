//! The simulator's three handlers: a call request scheduled on a line (or refused), its attempts and
//! retries with their records, status reads, and removes.

use super::*;

pub(super) const CONTENT_PARAMS: [&str; 6] = [
    "startapp",
    "txt",
    "audiofile",
    "startexec",
    "startvxml",
    "starturl",
];

pub(super) fn call_request(
    shared: &Arc<Shared>,
    params: &BTreeMap<String, String>,
    rec: &mut Recorded,
) -> Result<Response<Full<Bytes>>, DroppedReply> {
    let phoneno = params.get("phoneno").map(|s| s.trim()).unwrap_or("");
    let firstocc = params
        .get("firstocc")
        .and_then(|s| s.trim().parse::<u32>().ok());
    let problem = if phoneno.is_empty() {
        Some("missing parameter phoneno")
    } else if firstocc.is_none() {
        Some("missing or invalid parameter firstocc")
    } else if !CONTENT_PARAMS
        .iter()
        .any(|p| params.get(*p).is_some_and(|v| !v.trim().is_empty()))
    {
        Some("no call content (startapp, txt, audiofile, startexec, startvxml or starturl)")
    } else {
        None
    };
    if let Some(p) = problem {
        rec.outcome = "rejected".into();
        return Ok(reply(StatusCode::BAD_REQUEST, jsp(&format!("ERROR: {p}"))));
    }
    let firstocc = firstocc.unwrap_or(10);
    let selfdelete = params.get("selfdelete").is_some_and(|v| v.trim() == "1");

    let (id, script, fault_reply) = {
        let mut st = shared.state();
        if st.chance(shared.faults.call_unavailable) {
            rec.outcome = "unavailable".into();
            return Ok(reply(
                StatusCode::SERVICE_UNAVAILABLE,
                jsp("<html><body><h1>HTTP Status 503 - Service Unavailable</h1></body></html>"),
            ));
        }
        if st.chance(shared.faults.call_refused) {
            rec.outcome = "rejected".into();
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                jsp("ERROR: the scheduler refused the request"),
            ));
        }
        // Faults that come after the record is created, the dangerous kind: the call goes ahead either way.
        let fault_reply = if st.chance(shared.faults.call_drop) {
            Some(Reply::Drop)
        } else if st.chance(shared.faults.call_error) {
            Some(Reply::Error)
        } else if st.chance(shared.faults.call_reworded) {
            Some(Reply::Reworded)
        } else {
            None
        };
        let script = st.picker.pick(phoneno, params);
        let id = if script.reply == Reply::ReuseId && st.last_id > 0 {
            st.last_id
        } else {
            now_ms().max(st.last_id + 1)
        };
        st.last_id = id;
        let id = id.to_string();
        let replaced = st.calls.insert(
            id.clone(),
            Call {
                records: Vec::new(),
                task: None,
                polls: script.polls.iter().copied().collect(),
                short_records: script.short_records,
            },
        );
        if let Some(task) = replaced.and_then(|c| c.task) {
            task.abort();
        }
        (id, script, fault_reply)
    };
    let reply_kind = fault_reply.unwrap_or(script.reply);
    let task = tokio::spawn(run_call(
        shared.clone(),
        id.clone(),
        script,
        firstocc,
        selfdelete,
    ));
    if let Some(call) = shared.state().calls.get_mut(&id) {
        call.task = Some(task.abort_handle());
    }
    rec.req_id = Some(id.clone());
    let (_, z) = gateway_now();
    let when = z.strftime("%a %b %d %H:%M:%S %Z %Y").to_string();
    match reply_kind {
        Reply::Drop => {
            rec.outcome = "dropped".into();
            Err(DroppedReply)
        }
        Reply::Error => {
            rec.outcome = "scheduled-error".into();
            Ok(reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                jsp(
                    "<html><body><h1>HTTP Status 500 - java.lang.NullPointerException</h1></body></html>",
                ),
            ))
        }
        Reply::BadGateway => {
            rec.outcome = "scheduled-error".into();
            Ok(reply(
                StatusCode::BAD_GATEWAY,
                jsp("<html><body><h1>502 Bad Gateway</h1></body></html>"),
            ))
        }
        Reply::Reworded => {
            rec.outcome = "scheduled-reworded".into();
            Ok(reply(
                StatusCode::OK,
                jsp(&format!(
                    "<html><head><title>Voicent Gateway</title></head><body>\r\nCall request {id} accepted for {when}.\r\n</body></html>"
                )),
            ))
        }
        Reply::Normal | Reply::ReuseId => {
            rec.outcome = "scheduled".into();
            Ok(reply(
                StatusCode::OK,
                jsp(&format!(
                    "<html><head><title>Voicent Gateway</title></head><body>\r\nYour call is scheduled for {when}. [ReqId={id}]\r\n</body></html>"
                )),
            ))
        }
    }
}

/// Plays one call's script: each attempt waits for a free line, rings, and appends its record.
pub(super) async fn run_call(
    shared: Arc<Shared>,
    id: String,
    script: Script,
    firstocc: u32,
    selfdelete: bool,
) {
    let s = &shared.settings;
    let (created, _) = gateway_now();
    let started = tokio::time::Instant::now();
    let too_late = Duration::from_secs(u64::from(firstocc) * 60);
    for (i, attempt) in script.attempts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(s.retry_delay).await;
        }
        if attempt.is_forget() {
            shared.state().calls.remove(&id);
            return;
        }
        let late = started.elapsed() > too_late;
        let (status, notes, responses) = if late {
            ("failed", "Too late to call", "")
        } else {
            let Ok(line) = shared.lines.clone().acquire_owned().await else {
                return;
            };
            let talk = if attempt.status == "made" {
                s.call_duration
            } else {
                Duration::ZERO
            };
            tokio::time::sleep(s.ring_delay + talk).await;
            drop(line);
            (
                attempt.status.as_str(),
                attempt.notes.as_str(),
                attempt.responses.as_str(),
            )
        };
        let (at, _) = gateway_now();
        let record = protocol::format_record(status, at, created, notes, responses);
        let is_final = late || attempt.is_final();
        let mut st = shared.state();
        let Some(call) = st.calls.get_mut(&id) else {
            return; // removed meanwhile
        };
        call.records.push(record);
        if is_final {
            call.task = None;
            if selfdelete {
                st.calls.remove(&id);
            }
            return;
        }
    }
    if let Some(call) = shared.state().calls.get_mut(&id) {
        call.task = None;
    }
}

pub(super) fn req_id_param(params: &BTreeMap<String, String>) -> String {
    params
        .get("reqid")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub(super) fn status_request(
    shared: &Shared,
    params: &BTreeMap<String, String>,
    rec: &mut Recorded,
) -> Response<Full<Bytes>> {
    let id = req_id_param(params);
    rec.req_id = Some(id.clone());
    let mut st = shared.state();
    let scripted = st.calls.get_mut(&id).and_then(|c| c.polls.pop_front());
    match scripted {
        Some(scenario::PollAnswer::Missing) => {
            rec.outcome = "no-such-record".into();
            return reply(
                StatusCode::OK,
                jsp(&format!("ERROR: no such call record: {id}")),
            );
        }
        Some(scenario::PollAnswer::Error) => {
            rec.outcome = "status-error".into();
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                jsp(
                    "<html><body><h1>HTTP Status 500 - java.lang.NullPointerException</h1></body></html>",
                ),
            );
        }
        Some(scenario::PollAnswer::Garbage) => {
            rec.outcome = "status-garbage".into();
            return reply(
                StatusCode::OK,
                jsp("<html><body>Voicent Gateway is starting, please wait...</body></html>"),
            );
        }
        Some(scenario::PollAnswer::Normal) | None => {}
    }
    if st.chance(shared.faults.status_error) {
        rec.outcome = "status-error".into();
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            jsp(
                "<html><body><h1>HTTP Status 500 - java.lang.NullPointerException</h1></body></html>",
            ),
        );
    }
    if st.chance(shared.faults.status_garbage) {
        rec.outcome = "status-garbage".into();
        return reply(
            StatusCode::OK,
            jsp("<html><body>Voicent Gateway is starting, please wait...</body></html>"),
        );
    }
    let body = match st.calls.get(&id) {
        None => {
            rec.outcome = "no-such-record".into();
            format!("ERROR: no such call record: {id}")
        }
        Some(call) if call.records.is_empty() => {
            rec.outcome = "no-attempt".into();
            "[]".to_string()
        }
        Some(call) => {
            rec.outcome = "attempts".into();
            let last = call
                .records
                .last()
                .and_then(|r| r.split('^').nth(2))
                .unwrap_or("")
                .to_string();
            rec.is_final = last == "made" || last == "failed";
            rec.status = Some(last);
            let records: String = if call.short_records {
                // Each record is ten `^`-terminated fields; keep the first eight.
                call.records
                    .iter()
                    .map(|r| {
                        let f: Vec<&str> = r.split('^').take(8).collect();
                        format!("{}^", f.join("^"))
                    })
                    .collect()
            } else {
                call.records.concat()
            };
            format!("[{records}\r\n]")
        }
    };
    reply(StatusCode::OK, jsp(&body))
}

pub(super) fn remove_request(
    shared: &Shared,
    params: &BTreeMap<String, String>,
    rec: &mut Recorded,
) -> Response<Full<Bytes>> {
    let id = req_id_param(params);
    rec.req_id = Some(id.clone());
    let removed = shared.state().calls.remove(&id);
    let body = match removed {
        Some(call) => {
            if let Some(t) = call.task {
                t.abort(); // cancels a queued or ringing call; its line is released with the task
            }
            rec.outcome = "removed".into();
            "[removed]".to_string()
        }
        None => {
            rec.outcome = "no-such-record".into();
            format!("ERROR: no such call record: {id}")
        }
    };
    reply(StatusCode::OK, jsp(&body))
}
