//! etcd's membership changes (MemberAdd, MemberRemove, MemberUpdate, MemberPromote, and a
//! member publishing its name and client URLs once it runs) on openraft's joint-consensus
//! membership. The rules etcd checks before a change (`mayAddMember` and friends with
//! `--strict-reconfig-check`, on by default) are pure functions of the current membership
//! here; the leader checks them and proposes the change, a follower forwards it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::transport::wire::ForwardRefusal;
use crate::types::{Member, MemberId};

/// etcd's `maxLearners`: at most this many learners at once.
pub const MAX_LEARNERS: usize = 1;
/// etcd's `readyPercent`: a learner may be promoted once its log has at least this share of
/// the leader's.
pub const LEARNER_READY_PERCENT: f64 = 0.9;

/// Members known to be removed, and members told by a peer that they were removed. One
/// process is one member, so this is process-wide (etcd keeps removed IDs in its store; here
/// they are remembered until the process restarts). Keyed by member ID.
static REMOVED: Mutex<BTreeSet<MemberId>> = Mutex::new(BTreeSet::new());

/// Records that `id` left the membership (seen applying a change, or told by a peer).
pub fn mark_removed(id: MemberId) {
    REMOVED.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
}

/// Whether `id` is known to have been removed.
pub fn is_removed(id: MemberId) -> bool {
    REMOVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&id)
}

/// When each member (of this process) last heard from a leader through an accepted append:
/// a follower whose leader fell silent for an election timeout reports no leader, as etcd's
/// followers do once their election timer fires (with pre-vote, openraft's follower keeps its
/// vote, and so its leader, until another member wins).
static LEADER_CONTACT: Mutex<BTreeMap<MemberId, std::time::Instant>> = Mutex::new(BTreeMap::new());

/// Records that `me` just accepted an append (or starts counting from now).
pub fn touch_leader_contact(me: MemberId) {
    let mut map = LEADER_CONTACT.lock().unwrap_or_else(|e| e.into_inner());
    map.insert(me, std::time::Instant::now());
}

/// Time since `me` last heard from a leader, if it is counting.
pub fn since_leader_contact(me: MemberId) -> Option<std::time::Duration> {
    let map = LEADER_CONTACT.lock().unwrap_or_else(|e| e.into_inner());
    map.get(&me).map(|t| t.elapsed())
}

/// Per member: the leaders it cannot reach on their peer port (set by the server's leader
/// probe). Such a leader's appends are refused, so an asymmetric partition (a leader whose
/// inbound peer traffic is cut, while it can still dial its followers) ends as it does on
/// etcd, whose peer streams are dialled by the receiving side: the followers stop hearing
/// from it, elect a new leader among themselves, and the old one steps down when it next
/// sees the new term. Without this the old leader kept its followers (it dials them) while
/// every write forwarded to it hung.
static CUT_OFF: Mutex<BTreeMap<MemberId, BTreeSet<MemberId>>> = Mutex::new(BTreeMap::new());

/// Marks `leader` as unreachable from `me` (true) or reachable again (false); returns whether
/// that changed anything.
pub fn set_cut_off(me: MemberId, leader: MemberId, cut: bool) -> bool {
    let mut map = CUT_OFF.lock().unwrap_or_else(|e| e.into_inner());
    let set = map.entry(me).or_default();
    if cut {
        set.insert(leader)
    } else {
        set.remove(&leader)
    }
}

/// Whether `me` refuses appends from `leader` (see [`set_cut_off`]).
pub fn is_cut_off(me: MemberId, leader: MemberId) -> bool {
    let map = CUT_OFF.lock().unwrap_or_else(|e| e.into_inner());
    map.get(&me).is_some_and(|s| s.contains(&leader))
}

/// The leaders `me` currently refuses.
pub fn cut_off_leaders(me: MemberId) -> Vec<MemberId> {
    let map = CUT_OFF.lock().unwrap_or_else(|e| e.into_inner());
    map.get(&me)
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default()
}

/// One member as the Cluster API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: MemberId,
    pub member: Member,
    pub is_learner: bool,
}

impl MemberView {
    /// etcd calls a member started once it has published its name.
    pub fn is_started(&self) -> bool {
        !self.member.name.is_empty()
    }
}

/// The membership this member last saw, sorted by ID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipView {
    pub members: Vec<MemberView>,
}

impl MembershipView {
    /// Builds the view from openraft's membership: every node, voters flagged as such (in a
    /// joint configuration, a voter of either half is a voter).
    pub fn from_openraft(nodes: &BTreeMap<MemberId, Member>, voters: &BTreeSet<MemberId>) -> Self {
        let members = nodes
            .iter()
            .map(|(id, member)| MemberView {
                id: *id,
                member: member.clone(),
                is_learner: !voters.contains(id),
            })
            .collect();
        MembershipView { members }
    }

    pub fn get(&self, id: MemberId) -> Option<&MemberView> {
        self.members.iter().find(|m| m.id == id)
    }

    fn voters(&self) -> impl Iterator<Item = &MemberView> {
        self.members.iter().filter(|m| !m.is_learner)
    }

    fn learners(&self) -> usize {
        self.members.iter().filter(|m| m.is_learner).count()
    }

    fn peer_url_taken(&self, urls: &[String], except: Option<MemberId>) -> bool {
        self.members
            .iter()
            .filter(|m| Some(m.id) != except)
            .any(|m| m.member.peer_urls.iter().any(|u| urls.contains(u)))
    }
}

/// A membership change as the Cluster API asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberChange {
    /// A running member's name and client URLs (etcd's `publish`); peer URLs unchanged.
    Publish {
        id: MemberId,
        name: String,
        client_urls: Vec<String>,
    },
    /// A new member, unstarted until it publishes.
    Add {
        id: MemberId,
        peer_urls: Vec<String>,
        learner: bool,
    },
    Remove {
        id: MemberId,
    },
    Update {
        id: MemberId,
        peer_urls: Vec<String>,
    },
    Promote {
        id: MemberId,
    },
}

/// Why a change was refused, with etcd's messages (`rpctypes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MemberChangeError {
    #[error("etcdserver: member not found")]
    NotFound,
    #[error("etcdserver: member ID already exist")]
    IdExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: given member URLs are invalid")]
    BadUrls,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStarted,
    /// A voter is unreachable (add), or removing this one would leave too few reachable.
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// The change was not made for a raft reason (no leader, timeout, ...).
    #[error("{0:?}")]
    Raft(ForwardRefusal),
}

/// What openraft must do for a change that passed etcd's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Replace the node records of these members (voters stay voters).
    SetNodes(BTreeMap<MemberId, Member>),
    /// Add voters (with their records).
    AddVoters(BTreeMap<MemberId, Member>),
    /// Add learners (with their records).
    AddLearner(MemberId, Member),
    RemoveVoter(MemberId),
    RemoveLearner(MemberId),
    PromoteLearner(MemberId),
    /// Already so: nothing to propose (a repeated publish).
    Nothing,
}

/// How far a learner's log is replicated, for the promote check: the learner's matched
/// index and the leader's last log index.
#[derive(Debug, Clone, Copy)]
pub struct LearnerProgress {
    pub matched: u64,
    pub leader_last: u64,
}

/// etcd's checks for `change` against `view`; `progress` is consulted for promotions,
/// `connected` (is the leader in touch with this member; true for the leader) for etcd's
/// health checks on add and remove.
pub fn plan(
    view: &MembershipView,
    change: &MemberChange,
    progress: impl Fn(MemberId) -> Option<LearnerProgress>,
    connected: impl Fn(MemberId) -> bool,
) -> Result<Plan, MemberChangeError> {
    match change {
        MemberChange::Publish {
            id,
            name,
            client_urls,
        } => {
            let current = view.get(*id).ok_or(MemberChangeError::NotFound)?;
            if current.member.name == *name && current.member.client_urls == *client_urls {
                return Ok(Plan::Nothing);
            }
            let member = Member {
                name: name.clone(),
                peer_urls: current.member.peer_urls.clone(),
                client_urls: client_urls.clone(),
            };
            Ok(Plan::SetNodes(BTreeMap::from([(*id, member)])))
        }
        MemberChange::Add {
            id,
            peer_urls,
            learner,
        } => {
            // etcd: every voter must be reachable before the cluster grows.
            if !view.voters().all(|m| connected(m.id)) {
                return Err(MemberChangeError::Unhealthy);
            }
            plan_add(view, *id, peer_urls, *learner)
        }
        MemberChange::Remove { id } => {
            let current = view.get(*id).ok_or(MemberChangeError::NotFound)?;
            if current.is_learner {
                return Ok(Plan::RemoveLearner(*id));
            }
            if !ready_to_remove_voter(view, *id) {
                return Err(MemberChangeError::NotEnoughStarted);
            }
            if !safe_to_remove_voter(view, *id, &connected) {
                return Err(MemberChangeError::Unhealthy);
            }
            Ok(Plan::RemoveVoter(*id))
        }
        MemberChange::Update { id, peer_urls } => {
            let current = view.get(*id).ok_or(MemberChangeError::NotFound)?;
            check_urls(peer_urls)?;
            if view.peer_url_taken(peer_urls, Some(*id)) {
                return Err(MemberChangeError::PeerUrlExists);
            }
            let mut member = current.member.clone();
            member.peer_urls = peer_urls.clone();
            Ok(Plan::SetNodes(BTreeMap::from([(*id, member)])))
        }
        MemberChange::Promote { id } => {
            let current = view.get(*id).ok_or(MemberChangeError::NotFound)?;
            if !current.is_learner {
                return Err(MemberChangeError::NotLearner);
            }
            let ready = progress(*id)
                .is_some_and(|p| p.matched as f64 >= p.leader_last as f64 * LEARNER_READY_PERCENT);
            if !ready {
                return Err(MemberChangeError::LearnerNotReady);
            }
            if !ready_to_promote(view, current) {
                return Err(MemberChangeError::NotEnoughStarted);
            }
            Ok(Plan::PromoteLearner(*id))
        }
    }
}

fn plan_add(
    view: &MembershipView,
    id: MemberId,
    peer_urls: &[String],
    learner: bool,
) -> Result<Plan, MemberChangeError> {
    check_urls(peer_urls)?;
    if view.get(id).is_some() {
        return Err(MemberChangeError::IdExists);
    }
    if view.peer_url_taken(peer_urls, None) {
        return Err(MemberChangeError::PeerUrlExists);
    }
    let member = Member {
        name: String::new(),
        peer_urls: peer_urls.to_vec(),
        client_urls: Vec::new(),
    };
    if learner {
        if view.learners() >= MAX_LEARNERS {
            return Err(MemberChangeError::TooManyLearners);
        }
        return Ok(Plan::AddLearner(id, member));
    }
    if !ready_to_add_voter(view) {
        return Err(MemberChangeError::NotEnoughStarted);
    }
    Ok(Plan::AddVoters(BTreeMap::from([(id, member)])))
}

fn check_urls(urls: &[String]) -> Result<(), MemberChangeError> {
    let valid = |u: &String| {
        let rest = u
            .strip_prefix("http://")
            .or_else(|| u.strip_prefix("https://"));
        rest.is_some_and(|hp| {
            hp.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        })
    };
    if urls.is_empty() || !urls.iter().all(valid) {
        return Err(MemberChangeError::BadUrls);
    }
    Ok(())
}

fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// etcd's `IsReadyToAddVotingMember`: after adding, the started voters still make a quorum
/// (adding a second member to a one-member cluster is allowed).
fn ready_to_add_voter(view: &MembershipView) -> bool {
    let members = view.voters().count() + 1;
    let started = view.voters().filter(|m| m.is_started()).count();
    (started == 1 && members == 2) || started >= quorum(members)
}

/// etcd's `IsReadyToRemoveVotingMember`.
fn ready_to_remove_voter(view: &MembershipView, id: MemberId) -> bool {
    let rest: Vec<_> = view.voters().filter(|m| m.id != id).collect();
    let started = rest.iter().filter(|m| m.is_started()).count();
    started >= quorum(rest.len())
}

/// etcd's `mayRemoveMember` health rule: a member that is down may go; otherwise the
/// reachable voters left must still make a quorum of the voters left.
fn safe_to_remove_voter(
    view: &MembershipView,
    id: MemberId,
    connected: &impl Fn(MemberId) -> bool,
) -> bool {
    if !connected(id) {
        return true;
    }
    let voters = view.voters().count();
    let active = view.voters().filter(|m| connected(m.id)).count();
    // etcd: (active - 1) >= 1 + (voters - 1) / 2, the removed member being active
    active > 1 + (voters - 1) / 2
}

/// etcd's `IsReadyToPromoteMember`.
fn ready_to_promote(view: &MembershipView, learner: &MemberView) -> bool {
    let members = view.voters().count() + 1;
    let started =
        view.voters().filter(|m| m.is_started()).count() + usize::from(learner.is_started());
    started >= quorum(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, port: u16) -> Member {
        Member {
            name: name.into(),
            peer_urls: vec![format!("http://127.0.0.1:{port}")],
            client_urls: vec![],
        }
    }

    fn view(voters: &[(MemberId, &str)], learners: &[(MemberId, &str)]) -> MembershipView {
        let mut nodes = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for (i, (id, name)) in voters.iter().chain(learners).enumerate() {
            nodes.insert(*id, member(name, 2380 + i as u16));
        }
        for (id, _) in voters {
            ids.insert(*id);
        }
        MembershipView::from_openraft(&nodes, &ids)
    }

    fn add(id: MemberId, port: u16, learner: bool) -> MemberChange {
        MemberChange::Add {
            id,
            peer_urls: vec![format!("http://127.0.0.1:{port}")],
            learner,
        }
    }

    fn no_progress(_: MemberId) -> Option<LearnerProgress> {
        None
    }

    fn all_up(_: MemberId) -> bool {
        true
    }

    /// etcd's health rules: no add while a voter is down; removing a member that is up is
    /// refused when the reachable rest would not make a quorum; a down member may go.
    #[test]
    fn adds_and_removes_respect_reachability() {
        let v = view(&[(1, "a"), (2, "b"), (3, "c")], &[]);
        let two_down = |id| id != 2;
        assert_eq!(
            plan(&v, &add(9, 9999, true), no_progress, two_down),
            Err(MemberChangeError::Unhealthy)
        );
        assert_eq!(
            plan(&v, &add(9, 9999, false), no_progress, two_down),
            Err(MemberChangeError::Unhealthy)
        );
        let remove3 = MemberChange::Remove { id: 3 };
        assert_eq!(
            plan(&v, &remove3, no_progress, two_down),
            Err(MemberChangeError::Unhealthy)
        );
        assert_eq!(
            plan(&v, &MemberChange::Remove { id: 2 }, no_progress, two_down),
            Ok(Plan::RemoveVoter(2))
        );
        assert_eq!(
            plan(&v, &remove3, no_progress, all_up),
            Ok(Plan::RemoveVoter(3))
        );
    }

    /// etcd's add rules: duplicate ID or peer URL, bad URL, one learner at most, and the
    /// started-quorum check that refuses a second unstarted voter in a small cluster.
    #[test]
    fn add_follows_etcds_rules() {
        let three = view(&[(1, "a"), (2, "b"), (3, "c")], &[]);
        assert!(matches!(
            plan(&three, &add(9, 9999, false), no_progress, all_up),
            Ok(Plan::AddVoters(_))
        ));
        assert_eq!(
            plan(&three, &add(2, 9999, false), no_progress, all_up),
            Err(MemberChangeError::IdExists)
        );
        assert_eq!(
            plan(&three, &add(9, 2381, true), no_progress, all_up),
            Err(MemberChangeError::PeerUrlExists)
        );
        let bad = MemberChange::Add {
            id: 9,
            peer_urls: vec!["127.0.0.1:1".into()],
            learner: false,
        };
        assert_eq!(
            plan(&three, &bad, no_progress, all_up),
            Err(MemberChangeError::BadUrls)
        );
        let with_learner = view(&[(1, "a"), (2, "b"), (3, "c")], &[(4, "")]);
        assert_eq!(
            plan(&with_learner, &add(9, 9999, true), no_progress, all_up),
            Err(MemberChangeError::TooManyLearners)
        );

        let one = view(&[(1, "a")], &[]);
        assert!(
            plan(&one, &add(9, 9999, false), no_progress, all_up).is_ok(),
            "second member of one"
        );
        let one_pending = view(&[(1, "a"), (2, "")], &[]);
        assert_eq!(
            plan(&one_pending, &add(9, 9999, false), no_progress, all_up),
            Err(MemberChangeError::NotEnoughStarted)
        );
        assert!(
            plan(&one_pending, &add(9, 9999, true), no_progress, all_up).is_ok(),
            "learners are not counted"
        );
    }

    /// Remove keeps a started quorum; promote needs a learner in sync and a started quorum.
    #[test]
    fn remove_and_promote_follow_etcds_rules() {
        let v = view(&[(1, "a"), (2, "b"), (3, "")], &[(4, "d")]);
        assert_eq!(
            plan(&v, &MemberChange::Remove { id: 7 }, no_progress, all_up),
            Err(MemberChangeError::NotFound)
        );
        assert_eq!(
            plan(&v, &MemberChange::Remove { id: 4 }, no_progress, all_up),
            Ok(Plan::RemoveLearner(4))
        );
        assert_eq!(
            plan(&v, &MemberChange::Remove { id: 3 }, no_progress, all_up),
            Ok(Plan::RemoveVoter(3))
        );
        assert_eq!(
            plan(&v, &MemberChange::Remove { id: 1 }, no_progress, all_up),
            Err(MemberChangeError::NotEnoughStarted)
        );

        let promote = MemberChange::Promote { id: 4 };
        assert_eq!(
            plan(&v, &MemberChange::Promote { id: 1 }, no_progress, all_up),
            Err(MemberChangeError::NotLearner)
        );
        let lagging = |_| {
            Some(LearnerProgress {
                matched: 80,
                leader_last: 100,
            })
        };
        assert_eq!(
            plan(&v, &promote, lagging, all_up),
            Err(MemberChangeError::LearnerNotReady)
        );
        let synced = |_| {
            Some(LearnerProgress {
                matched: 95,
                leader_last: 100,
            })
        };
        assert_eq!(
            plan(&v, &promote, synced, all_up),
            Ok(Plan::PromoteLearner(4))
        );
    }

    /// Publishing sets name and client URLs, keeps peer URLs, and is a no-op when repeated.
    #[test]
    fn publish_sets_attributes_once() {
        let v = view(&[(1, "")], &[]);
        let publish = MemberChange::Publish {
            id: 1,
            name: "a".into(),
            client_urls: vec!["http://127.0.0.1:2379".into()],
        };
        let Ok(Plan::SetNodes(nodes)) = plan(&v, &publish, no_progress, all_up) else {
            panic!("expected SetNodes")
        };
        assert_eq!(
            nodes[&1].peer_urls,
            vec!["http://127.0.0.1:2380".to_string()]
        );
        let done = MembershipView::from_openraft(&nodes, &BTreeSet::from([1]));
        assert_eq!(
            plan(&done, &publish, no_progress, all_up),
            Ok(Plan::Nothing)
        );
    }
}
