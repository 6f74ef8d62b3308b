//! Mailbox command arguments: SELECT/EXAMINE parameters, STATUS items, LIST.

use super::{PErr, Parser, R, bad};
use crate::command::*;
use crate::types::*;

impl Parser<'_> {
    pub(super) fn select_params(&mut self) -> R<SelectParams> {
        let mut params = SelectParams::default();
        if !self.at_sp()? {
            return Ok(params);
        }
        self.sp()?;
        let mut seen = false;
        self.paren_list(|p| {
            match p.word()?.as_str() {
                "CONDSTORE" => p_set(&mut params.condstore)?,
                "QRESYNC" if !seen => {
                    seen = true;
                    p.sp()?;
                    p.open()?;
                    let uid_validity = p.nz_number()?;
                    p.sp()?;
                    let mod_seq = p.number64()?;
                    let mut q = QResync {
                        uid_validity,
                        mod_seq,
                        known_uids: None,
                        seq_match: None,
                    };
                    if p.at_sp()? {
                        p.sp()?;
                        if p.peek()? != b'(' {
                            q.known_uids = Some(p.sequence_set()?);
                            if p.at_sp()? {
                                p.sp()?;
                            }
                        }
                        if p.peek()? == b'(' {
                            p.open()?;
                            let seqs = p.sequence_set()?;
                            p.sp()?;
                            let uids = p.sequence_set()?;
                            p.close()?;
                            q.seq_match = Some((seqs, uids));
                        }
                    }
                    p.close()?;
                    params.qresync = Some(q);
                }
                w => return bad(format!("unknown SELECT parameter {w}")),
            }
            Ok(())
        })?;
        Ok(params)
    }

    pub(super) fn status_items(&mut self) -> R<Vec<StatusItem>> {
        self.paren_list(|p| {
            let w = p.word()?;
            StatusItem::parse(&w).ok_or_else(|| PErr::Bad(format!("unknown status item {w}")))
        })
    }

    pub(super) fn list(&mut self) -> R<Command> {
        let mut list = List::default();
        self.sp()?;
        if self.peek()? == b'(' {
            list.select = self.paren_list0(|p| {
                Ok(match p.word()?.as_str() {
                    "SUBSCRIBED" => ListSelect::Subscribed,
                    "REMOTE" => ListSelect::Remote,
                    "RECURSIVEMATCH" => ListSelect::RecursiveMatch,
                    "SPECIAL-USE" => ListSelect::SpecialUse,
                    w => return bad(format!("unknown LIST selection option {w}")),
                })
            })?;
            if list.select == [ListSelect::RecursiveMatch] {
                return bad("RECURSIVEMATCH needs another selection option");
            }
            self.sp()?;
        }
        let raw = self.astring()?;
        list.reference = self.name(raw)?;
        self.sp()?;
        if self.peek()? == b'(' {
            list.patterns = self.paren_list(Self::list_mailbox)?;
        } else {
            list.patterns = vec![self.list_mailbox()?];
        }
        if self.at_sp()? {
            self.sp()?;
            self.keyword("RETURN")?;
            self.sp()?;
            list.returns = self.paren_list0(|p| {
                Ok(match p.word()?.as_str() {
                    "SUBSCRIBED" => ListReturn::Subscribed,
                    "CHILDREN" => ListReturn::Children,
                    "SPECIAL-USE" => ListReturn::SpecialUse,
                    "STATUS" => {
                        p.sp()?;
                        ListReturn::Status(p.status_items()?)
                    }
                    w => return bad(format!("unknown LIST return option {w}")),
                })
            })?;
        }
        Ok(Command::List(list))
    }
}

fn p_set(b: &mut bool) -> R<()> {
    if *b {
        return bad("parameter given twice");
    }
    *b = true;
    Ok(())
}
