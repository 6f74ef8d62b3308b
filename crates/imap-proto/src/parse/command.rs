//! The command line: tag, verb, the UID prefix, and the arguments of the commands parsed inline.

use super::base64::{base64_decode, is_base64_char};
use super::{PErr, Parser, R, bad, is_tag_char};
use crate::command::*;
use crate::types::*;

impl Parser<'_> {
    fn tag(&mut self) -> R<String> {
        let t = self.take_while(is_tag_char, "a tag")?;
        Ok(String::from_utf8_lossy(t).into_owned())
    }

    /// The whole command, through its CRLF.
    pub fn command(&mut self) -> R<TaggedCommand> {
        let tag = self.tag()?;
        self.sp()?;
        let verb = self.take_while(|c| c.is_ascii_alphanumeric() || c == b'-', "a command")?;
        let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();
        let command = match verb.as_str() {
            "UID" => {
                self.sp()?;
                let v = self.word()?;
                self.uid_command(&v, true)?
            }
            _ => self.plain_command(&verb)?,
        };
        self.crlf()?;
        Ok(TaggedCommand { tag, command })
    }

    fn uid_command(&mut self, verb: &str, uid: bool) -> R<Command> {
        Ok(match verb {
            "FETCH" => self.fetch(uid)?,
            "SEARCH" => self.search(uid)?,
            "STORE" => self.store(uid)?,
            "COPY" | "MOVE" => {
                self.sp()?;
                let set = self.sequence_set()?;
                self.sp()?;
                let mailbox = self.mailbox()?;
                if verb == "COPY" {
                    Command::Copy { uid, set, mailbox }
                } else {
                    Command::Move { uid, set, mailbox }
                }
            }
            "SORT" => self.sort(uid)?,
            "THREAD" => self.thread(uid)?,
            "EXPUNGE" if uid => {
                self.sp()?;
                Command::UidExpunge(self.sequence_set()?)
            }
            _ if uid => return Err(PErr::Unknown(format!("UID {verb}"))),
            _ => return Err(PErr::Unknown(verb.to_string())),
        })
    }

    fn plain_command(&mut self, verb: &str) -> R<Command> {
        Ok(match verb {
            "CAPABILITY" => Command::Capability,
            "NOOP" => Command::Noop,
            "LOGOUT" => Command::Logout,
            "STARTTLS" => Command::StartTls,
            "NAMESPACE" => Command::Namespace,
            "IDLE" => Command::Idle,
            "CHECK" => Command::Check,
            "CLOSE" => Command::Close,
            "UNSELECT" => Command::Unselect,
            "EXPUNGE" => Command::Expunge,
            "UNAUTHENTICATE" => Command::Unauthenticate,
            "AUTHENTICATE" => {
                self.sp()?;
                let mechanism = self.atom()?.to_ascii_uppercase();
                let initial = if self.at_sp()? {
                    self.sp()?;
                    if self.peek()? == b'=' {
                        self.pos += 1;
                        Some(Secret(Vec::new()))
                    } else {
                        let text = self.take_while(is_base64_char, "base64")?;
                        Some(Secret(
                            base64_decode(text).ok_or_else(|| PErr::Bad("bad base64".into()))?,
                        ))
                    }
                } else {
                    None
                };
                Command::Authenticate { mechanism, initial }
            }
            "LOGIN" => {
                self.sp()?;
                let username = self.astring_utf8()?;
                self.sp()?;
                let password = Secret(self.astring()?);
                Command::Login { username, password }
            }
            "ENABLE" => {
                let mut caps = Vec::new();
                while self.at_sp()? || caps.is_empty() {
                    self.sp()?;
                    caps.push(self.atom()?.to_string());
                }
                Command::Enable(caps)
            }
            "SELECT" | "EXAMINE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let params = self.select_params()?;
                if verb == "SELECT" {
                    Command::Select { mailbox, params }
                } else {
                    Command::Examine { mailbox, params }
                }
            }
            "CREATE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut special_use = Vec::new();
                if self.at_sp()? {
                    self.sp()?;
                    self.open()?;
                    self.keyword("USE")?;
                    self.sp()?;
                    special_use = self.paren_list(|p| {
                        p.byte(b'\\', "a special-use attribute")?;
                        Ok(p.atom()?.to_string())
                    })?;
                    self.close()?;
                }
                Command::Create {
                    mailbox,
                    special_use,
                }
            }
            "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" | "GETQUOTAROOT" => {
                self.sp()?;
                let m = self.mailbox()?;
                match verb {
                    "DELETE" => Command::Delete(m),
                    "SUBSCRIBE" => Command::Subscribe(m),
                    "UNSUBSCRIBE" => Command::Unsubscribe(m),
                    _ => Command::GetQuotaRoot(m),
                }
            }
            "RENAME" => {
                self.sp()?;
                let from = self.mailbox()?;
                self.sp()?;
                let to = self.mailbox()?;
                Command::Rename { from, to }
            }
            "LIST" => self.list()?,
            "LSUB" => {
                self.sp()?;
                let raw = self.astring()?;
                let reference = self.name(raw)?;
                self.sp()?;
                let pattern = self.list_mailbox()?;
                Command::Lsub { reference, pattern }
            }
            "STATUS" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                let items = self.status_items()?;
                Command::Status { mailbox, items }
            }
            "APPEND" => self.append()?,
            "GETQUOTA" => {
                self.sp()?;
                Command::GetQuota(self.astring_utf8()?)
            }
            "SETQUOTA" => {
                self.sp()?;
                let root = self.astring_utf8()?;
                self.sp()?;
                let limits = self.paren_list0(|p| {
                    let name = p.atom()?.to_ascii_uppercase();
                    p.sp()?;
                    Ok((name, p.number64()?))
                })?;
                Command::SetQuota { root, limits }
            }
            "ID" => {
                self.sp()?;
                if self.is_nil() {
                    self.pos += 3;
                    Command::Id(None)
                } else {
                    let pairs = self.paren_list0(|p| {
                        let k = String::from_utf8(p.string()?).or_else(|_| bad("not UTF-8"))?;
                        p.sp()?;
                        Ok((k, p.nstring_utf8()?))
                    })?;
                    if pairs.len() > 30 {
                        return bad("ID takes at most 30 fields");
                    }
                    Command::Id(Some(pairs))
                }
            }
            "COMPRESS" => {
                self.sp()?;
                Command::Compress(self.atom()?.to_ascii_uppercase())
            }
            v => self.uid_command(v, false)?,
        })
    }
}
