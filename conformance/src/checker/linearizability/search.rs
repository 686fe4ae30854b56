//! Wing & Gong's backtracking search with Lowe's memoisation, as Porcupine implements it.
//!
//! Call and return events are kept in time order in a doubly linked list (array indices). The
//! search walks the list: at a call it tries to linearize that operation now (apply the model);
//! on success the operation's call and return are unlinked ("lifted") and the walk restarts from
//! the head. Reaching a return means the operation it closes should have been linearized before
//! it, so the search backtracks. A cache of (set of linearized ops, state) pairs already explored
//! prunes the exponential blow-up.

use std::collections::HashSet;
use std::time::Instant;

use super::model::{ModelOp, RegisterState, step};

const NIL: usize = usize::MAX;
const HEAD: usize = 0;
/// How many search steps run between two clock reads.
const DEADLINE_CHECK_STEPS: u64 = 1024;

/// Result of searching one key's sub-history.
#[derive(Debug)]
pub(crate) enum SearchOutcome {
    Linearizable,
    /// `deepest` is the longest linearized prefix found (op indices), `state` the state after it.
    NotLinearizable {
        deepest: Vec<usize>,
        state: RegisterState,
    },
    Timeout,
}

/// One operation of the sub-history with its real-time interval (`u64::MAX` = never returned).
pub(crate) struct TimedOp {
    pub op: ModelOp,
    pub call_ns: u64,
    pub return_ns: u64,
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
}

struct Frame {
    event: usize,
    state_before: RegisterState,
    alternative: Option<RegisterState>,
}

/// Doubly linked list of events; node 0 is the head sentinel, node i+1 is `events[i]`.
struct EventList {
    events: Vec<Event>,
    next: Vec<usize>,
    prev: Vec<usize>,
    return_node: Vec<usize>,
}

impl EventList {
    fn new(ops: &[TimedOp]) -> Self {
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            // Calls sort before returns at equal times: touching intervals count as concurrent.
            order.push((op.call_ns, false, i));
            order.push((op.return_ns, true, i));
        }
        order.sort_unstable();
        let mut events = vec![Event {
            op: NIL,
            is_call: false,
        }];
        let mut return_node = vec![NIL; ops.len()];
        for (_, is_return, op) in order {
            if is_return {
                return_node[op] = events.len();
            }
            events.push(Event {
                op,
                is_call: !is_return,
            });
        }
        let n = events.len();
        let next = (0..n)
            .map(|i| if i + 1 < n { i + 1 } else { NIL })
            .collect();
        let prev = (0..n).map(|i| if i == 0 { NIL } else { i - 1 }).collect();
        Self {
            events,
            next,
            prev,
            return_node,
        }
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    /// Undo `unlink` (valid in LIFO order: the node still holds its old neighbours).
    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    fn lift(&mut self, call_node: usize) {
        let ret = self.return_node[self.events[call_node].op];
        self.unlink(call_node);
        self.unlink(ret);
    }

    fn unlift(&mut self, call_node: usize) {
        let ret = self.return_node[self.events[call_node].op];
        self.relink(ret);
        self.relink(call_node);
    }
}

struct Bits(Vec<u64>);

impl Bits {
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

struct Search<'a> {
    ops: &'a [TimedOp],
    list: EventList,
    linearized: Bits,
    state: RegisterState,
    stack: Vec<Frame>,
    cache: HashSet<(Vec<u64>, RegisterState)>,
    deepest: Vec<usize>,
    agree: usize,
    deepest_state: RegisterState,
}

impl Search<'_> {
    /// Linearize the op at `node` into state `next` unless that configuration was seen before.
    fn try_push(
        &mut self,
        node: usize,
        next: RegisterState,
        alternative: Option<RegisterState>,
    ) -> bool {
        let op = self.list.events[node].op;
        self.linearized.set(op);
        if !self.cache.insert((self.linearized.0.clone(), next)) {
            self.linearized.clear(op);
            return false;
        }
        self.stack.push(Frame {
            event: node,
            state_before: self.state,
            alternative,
        });
        self.state = next;
        self.list.lift(node);
        // Keep `deepest` (the longest prefix so far) without copying the stack on every push:
        // `agree` is how much of the stack's bottom `deepest` still matches.
        let depth = self.stack.len();
        if self.agree == depth - 1 && self.deepest.get(depth - 1) == Some(&op) {
            self.agree = depth;
        }
        if depth > self.deepest.len() {
            self.deepest.truncate(self.agree);
            let events = &self.list.events;
            self.deepest
                .extend(self.stack[self.agree..].iter().map(|f| events[f.event].op));
            self.agree = depth;
            self.deepest_state = self.state;
        }
        true
    }

    /// Undo the last linearization; returns the node to continue from.
    fn backtrack(&mut self) -> Option<usize> {
        let frame = self.stack.pop()?;
        self.agree = self.agree.min(self.stack.len());
        self.state = frame.state_before;
        self.linearized.clear(self.list.events[frame.event].op);
        self.list.unlift(frame.event);
        if let Some(alt) = frame.alternative
            && self.try_push(frame.event, alt, None)
        {
            return Some(self.list.next[HEAD]);
        }
        Some(self.list.next[frame.event])
    }

    fn at_call(&mut self, node: usize) -> usize {
        let [first, second] = step(self.state, &self.ops[self.list.events[node].op].op);
        if let Some(s) = first
            && self.try_push(node, s, second)
        {
            return self.list.next[HEAD];
        }
        if let Some(s) = second
            && self.try_push(node, s, None)
        {
            return self.list.next[HEAD];
        }
        self.list.next[node]
    }
}

pub(crate) fn search(ops: &[TimedOp], initial: RegisterState, deadline: Instant) -> SearchOutcome {
    let mut s = Search {
        ops,
        list: EventList::new(ops),
        linearized: Bits(vec![0; ops.len().div_ceil(64)]),
        state: initial,
        stack: Vec::new(),
        cache: HashSet::new(),
        deepest: Vec::new(),
        agree: 0,
        deepest_state: initial,
    };
    let mut node = s.list.next[HEAD];
    let mut steps: u64 = 0;
    while s.list.next[HEAD] != NIL {
        steps += 1;
        if steps.is_multiple_of(DEADLINE_CHECK_STEPS) && Instant::now() >= deadline {
            return SearchOutcome::Timeout;
        }
        node = if s.list.events[node].is_call {
            s.at_call(node)
        } else {
            match s.backtrack() {
                Some(n) => n,
                None => {
                    return SearchOutcome::NotLinearizable {
                        deepest: s.deepest,
                        state: s.deepest_state,
                    };
                }
            }
        };
    }
    SearchOutcome::Linearizable
}
