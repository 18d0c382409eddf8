//! The subscription tree: a trie of topic-filter levels whose nodes hold the clients subscribed to
//! the filter ending there.
//!
//! Nodes live in one arena (`Vec<Node>`, `u32` ids, a free list) so that a node costs a few
//! dozen bytes; a node with many literal children switches from a small vector to a hash map.
//! `+` and `#` children have their own slots, so routing a topic visits at most the literal, `+`
//! and `#` branches at each level. Empty nodes are pruned as soon as they empty. A per-client
//! index of filter texts makes [`SubscriptionTree::remove_client`] cost the client's own
//! subscriptions, not the tree; it is the only copy of a subscriber's filters (sessions keep
//! none), indexed by the dense client key, with a client's single filter held inline.
//!
//! Walks use explicit stacks, never recursion, so a topic or filter with thousands of levels
//! cannot exhaust the worker's stack.

use std::cell::Cell;
use std::collections::HashMap;

use super::{ClientKey, QoS};

type NodeId = u32;

/// No such child.
const NONE: NodeId = NodeId::MAX;
/// The root has no level of its own; its children are a filter's first level.
const ROOT: NodeId = 0;
/// Above this many literal children a node uses a hash map.
const FEW_MAX: usize = 16;
/// At or below this many a hash map goes back to a vector (hysteresis against flapping).
const FEW_BACK: usize = 8;

/// Literal children of a node, keyed by level text.
enum Children {
    Few(Vec<(Box<str>, NodeId)>),
    #[allow(
        clippy::box_collection,
        reason = "boxed, a rare wide node keeps every node's `Children` at the size of a `Vec`"
    )]
    Many(Box<HashMap<Box<str>, NodeId>>),
}

impl Children {
    fn get(&self, level: &str) -> Option<NodeId> {
        match self {
            Children::Few(v) => v.iter().find(|(l, _)| **l == *level).map(|&(_, id)| id),
            Children::Many(m) => m.get(level).copied(),
        }
    }

    fn insert(&mut self, level: &str, id: NodeId) {
        match self {
            Children::Few(v) if v.len() < FEW_MAX => v.push((level.into(), id)),
            Children::Few(v) => {
                let mut m: HashMap<Box<str>, NodeId> = v.drain(..).collect();
                m.insert(level.into(), id);
                *self = Children::Many(Box::new(m));
            }
            Children::Many(m) => {
                m.insert(level.into(), id);
            }
        }
    }

    fn remove(&mut self, level: &str) {
        match self {
            Children::Few(v) => {
                if let Some(i) = v.iter().position(|(l, _)| **l == *level) {
                    v.swap_remove(i);
                }
            }
            Children::Many(m) => {
                m.remove(level);
                if m.len() <= FEW_BACK {
                    let few: Vec<_> = m.drain().collect();
                    *self = Children::Few(few);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Children::Few(v) => v.is_empty(),
            Children::Many(m) => m.is_empty(),
        }
    }

    fn for_each<'a>(&'a self, mut f: impl FnMut(&'a str, NodeId)) {
        match self {
            Children::Few(v) => v.iter().for_each(|(l, id)| f(l, *id)),
            Children::Many(m) => m.iter().for_each(|(l, id)| f(l, *id)),
        }
    }
}

/// One subscription at a node: subscribers are kept sorted by client for binary search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sub {
    client: ClientKey,
    qos: QoS,
}

struct Node {
    children: Children,
    subs: Subs,
    plus: NodeId,
    hash: NodeId,
}

impl Node {
    fn new() -> Node {
        Node {
            children: Children::Few(Vec::new()),
            subs: Subs::none(),
            plus: NONE,
            hash: NONE,
        }
    }

    fn is_empty(&self) -> bool {
        self.subs.is_empty() && self.plus == NONE && self.hash == NONE && self.children.is_empty()
    }
}

/// What [`SubscriptionTree::subscribe`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscribed {
    /// The filter had no subscriber before: forward the subscription upstream.
    FirstForFilter,
    /// A new subscription on a filter others already use.
    Added,
    /// The client already had this exact filter; its QoS was replaced ([MQTT-3.8.4-3]).
    Replaced,
}

/// What [`SubscriptionTree::unsubscribe`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsubscribed {
    /// The client had no subscription with this exact filter ([MQTT-3.10.4-4]).
    NotSubscribed,
    /// Removed; the filter still has other subscribers.
    Removed,
    /// Removed, and it was the filter's last subscriber: forward the unsubscription upstream.
    LastForFilter,
}

/// Topic filters to subscribers, for one worker. See the module header.
pub struct SubscriptionTree {
    nodes: Vec<Node>,
    free: Vec<NodeId>,
    /// Each client's filters, by [`ClientKey`]: keys are a slab's, so the vector stays dense.
    clients: Vec<Filters>,
    client_count: usize,
    subscriptions: usize,
    filters: usize,
    /// The routing walk's stack, kept between calls so that routing does not allocate.
    scratch: Cell<Vec<(NodeId, usize)>>,
}

impl Default for SubscriptionTree {
    fn default() -> Self {
        Self::new()
    }
}

impl SubscriptionTree {
    /// An empty tree (one root node).
    pub fn new() -> Self {
        SubscriptionTree {
            nodes: vec![Node::new()],
            free: Vec::new(),
            clients: Vec::new(),
            client_count: 0,
            subscriptions: 0,
            filters: 0,
            scratch: Cell::new(Vec::new()),
        }
    }

    /// Subscribes `client` to `filter` at `qos`, or replaces the QoS of its existing subscription
    /// with the identical filter ([MQTT-3.8.4-3]).
    pub fn subscribe(&mut self, client: ClientKey, filter: &str, qos: QoS) -> Subscribed {
        let leaf = self.make_path(filter);
        let subs = &mut self.nodes[leaf as usize].subs;
        let first = subs.is_empty();
        match subs.find(client) {
            Ok(i) => {
                subs.as_mut_slice()[i].qos = qos;
                return Subscribed::Replaced;
            }
            Err(i) => subs.insert(i, Sub { client, qos }),
        }
        self.subscriptions += 1;
        self.index(client, filter);
        if first {
            self.filters += 1;
            Subscribed::FirstForFilter
        } else {
            Subscribed::Added
        }
    }

    /// Removes `client`'s subscription to exactly `filter`, compared byte for byte
    /// ([MQTT-3.10.4-4]).
    pub fn unsubscribe(&mut self, client: ClientKey, filter: &str) -> Unsubscribed {
        let Some(list) = self.clients.get_mut(client.0 as usize) else {
            return Unsubscribed::NotSubscribed;
        };
        if !list.remove(filter) {
            return Unsubscribed::NotSubscribed;
        }
        if list.is_empty() {
            self.client_count -= 1;
        }
        if self.detach(client, filter) {
            Unsubscribed::LastForFilter
        } else {
            Unsubscribed::Removed
        }
    }

    /// Removes every subscription of `client` (its session ended). Returns the filters that lost
    /// their last subscriber, to forward upstream; empty (and unallocated) in the common case.
    pub fn remove_client(&mut self, client: ClientKey) -> Vec<Box<str>> {
        let mut unused = Vec::new();
        let Some(list) = self.clients.get_mut(client.0 as usize) else {
            return unused;
        };
        let list = std::mem::take(list);
        if !list.is_empty() {
            self.client_count -= 1;
        }
        for filter in list.into_vec() {
            if self.detach(client, &filter) {
                unused.push(filter);
            }
        }
        unused
    }

    /// `client`'s filters with their granted QoS, in the order subscribed but for
    /// unsubscriptions (which may swap the last into the place of the removed one).
    pub fn filters_of(&self, client: ClientKey) -> Vec<(Box<str>, QoS)> {
        let Some(list) = self.clients.get(client.0 as usize) else {
            return Vec::new();
        };
        list.iter()
            .filter_map(|f| {
                let leaf = self.find(f)?;
                let subs = &self.nodes[leaf as usize].subs;
                let i = subs.find(client).ok()?;
                Some((f.clone(), subs.as_slice()[i].qos))
            })
            .collect()
    }

    /// Fills `out` (cleared first) with each client whose subscriptions match `topic`, once, at
    /// the maximum QoS of its matching subscriptions ([MQTT-3.3.5-1]). Order is unspecified.
    pub fn route(&self, topic: &str, out: &mut Vec<(ClientKey, QoS)>) {
        out.clear();
        let mut stack = self.scratch.take();
        stack.clear();
        stack.push((ROOT, 0));
        let dollar = topic.starts_with('$');
        let mut sources = 0u32;
        while let Some((id, pos)) = stack.pop() {
            let node = &self.nodes[id as usize];
            // [MQTT-4.7.2-1]: no wildcard at the first level matches a `$` topic.
            let wildcards = pos != 0 || !dollar;
            if wildcards && node.hash != NONE {
                sources += self.emit(node.hash, out);
            }
            let Some(rest) = topic.get(pos..) else {
                sources += self.emit(id, out);
                continue;
            };
            let (level, next) = match rest.find('/') {
                Some(i) => (&rest[..i], pos + i + 1),
                None => (rest, topic.len() + 1),
            };
            if let Some(child) = node.children.get(level) {
                stack.push((child, next));
            }
            if wildcards && node.plus != NONE {
                stack.push((node.plus, next));
            }
        }
        self.scratch.set(stack);
        if sources > 1 {
            dedup_max_qos(out);
        }
    }

    /// Calls `f` with every filter that has at least one subscriber: the set this worker needs
    /// its siblings to forward (for a sibling that starts after the subscriptions were made).
    pub fn for_each_filter(&self, mut f: impl FnMut(&str)) {
        let mut text = String::new();
        // (node, its level, length of the parent's text, whether it is a first level)
        let mut stack: Vec<(NodeId, &str, usize, bool)> = Vec::new();
        self.push_children(ROOT, 0, true, &mut stack);
        while let Some((id, level, parent_len, top)) = stack.pop() {
            text.truncate(parent_len);
            if !top {
                text.push('/');
            }
            text.push_str(level);
            if !self.nodes[id as usize].subs.is_empty() {
                f(&text);
            }
            self.push_children(id, text.len(), false, &mut stack);
        }
    }

    /// Subscriptions (client, filter) held.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    /// Distinct filters with at least one subscriber.
    pub fn filter_count(&self) -> usize {
        self.filters
    }

    /// Clients with at least one subscription.
    pub fn client_count(&self) -> usize {
        self.client_count
    }

    /// Live nodes, the root included: 1 for an empty tree.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    fn push_children<'a>(
        &'a self,
        id: NodeId,
        len: usize,
        top: bool,
        stack: &mut Vec<(NodeId, &'a str, usize, bool)>,
    ) {
        let node = &self.nodes[id as usize];
        node.children
            .for_each(|level, child| stack.push((child, level, len, top)));
        if node.plus != NONE {
            stack.push((node.plus, "+", len, top));
        }
        if node.hash != NONE {
            stack.push((node.hash, "#", len, top));
        }
    }

    /// Appends the subscribers of node `id`; 1 if there were any, for the dedup decision.
    fn emit(&self, id: NodeId, out: &mut Vec<(ClientKey, QoS)>) -> u32 {
        let subs = &self.nodes[id as usize].subs;
        out.extend(subs.as_slice().iter().map(|s| (s.client, s.qos)));
        u32::from(!subs.is_empty())
    }

    /// The node for `filter`, created level by level as needed.
    fn make_path(&mut self, filter: &str) -> NodeId {
        let mut cur = ROOT;
        for level in filter.split('/') {
            cur = match self.child(cur, level) {
                Some(id) => id,
                None => {
                    let id = self.alloc();
                    self.link(cur, level, id);
                    id
                }
            };
        }
        cur
    }

    /// Records `filter` in `client`'s index entry (new to it: the tree had no such subscription).
    fn index(&mut self, client: ClientKey, filter: &str) {
        let k = client.0 as usize;
        if self.clients.len() <= k {
            self.clients.resize_with(k + 1, Filters::default);
        }
        let list = &mut self.clients[k];
        if list.is_empty() {
            self.client_count += 1;
        }
        list.push(filter.into());
    }

    /// The node of exactly `filter`, if it exists.
    fn find(&self, filter: &str) -> Option<NodeId> {
        filter
            .split('/')
            .try_fold(ROOT, |cur, level| self.child(cur, level))
    }

    fn child(&self, parent: NodeId, level: &str) -> Option<NodeId> {
        let node = &self.nodes[parent as usize];
        let id = match level {
            "+" => node.plus,
            "#" => node.hash,
            _ => return node.children.get(level),
        };
        (id != NONE).then_some(id)
    }

    fn link(&mut self, parent: NodeId, level: &str, id: NodeId) {
        let node = &mut self.nodes[parent as usize];
        match level {
            "+" => node.plus = id,
            "#" => node.hash = id,
            _ => node.children.insert(level, id),
        }
    }

    fn unlink(&mut self, parent: NodeId, level: &str) {
        let node = &mut self.nodes[parent as usize];
        match level {
            "+" => node.plus = NONE,
            "#" => node.hash = NONE,
            _ => node.children.remove(level),
        }
    }

    fn alloc(&mut self) -> NodeId {
        if let Some(id) = self.free.pop() {
            self.nodes[id as usize] = Node::new();
            return id;
        }
        let id = NodeId::try_from(self.nodes.len()).expect("fewer than 2^32 - 1 tree nodes");
        self.nodes.push(Node::new());
        id
    }

    /// Removes `client` from the node of `filter` and prunes the nodes left empty. True if the
    /// filter lost its last subscriber.
    fn detach(&mut self, client: ClientKey, filter: &str) -> bool {
        let mut path = vec![ROOT];
        for level in filter.split('/') {
            match self.child(path[path.len() - 1], level) {
                Some(id) => path.push(id),
                None => return false,
            }
        }
        let leaf = path[path.len() - 1] as usize;
        let subs = &mut self.nodes[leaf].subs;
        let Ok(i) = subs.find(client) else {
            return false;
        };
        subs.remove(i);
        self.subscriptions -= 1;
        if !subs.is_empty() {
            return false;
        }
        self.filters -= 1;
        self.prune(&path, filter);
        true
    }

    /// Frees the empty nodes at the end of `path` (the nodes of `filter`'s levels, after the
    /// root), deepest first.
    fn prune(&mut self, path: &[NodeId], filter: &str) {
        let levels: Vec<&str> = filter.split('/').collect();
        for depth in (1..path.len()).rev() {
            let id = path[depth];
            if !self.nodes[id as usize].is_empty() {
                break;
            }
            self.unlink(path[depth - 1], levels[depth - 1]);
            self.nodes[id as usize] = Node::new();
            self.free.push(id);
        }
    }
}

/// A node's subscribers, sorted by client for binary search: most filters have one (a
/// device's own topic), kept without a vector.
enum Subs {
    One(Sub),
    Many(Vec<Sub>),
}

impl Subs {
    fn none() -> Subs {
        Subs::Many(Vec::new())
    }

    fn as_slice(&self) -> &[Sub] {
        match self {
            Subs::One(s) => std::slice::from_ref(s),
            Subs::Many(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Sub] {
        match self {
            Subs::One(s) => std::slice::from_mut(s),
            Subs::Many(v) => v,
        }
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// Where `client` is, or where it would go.
    fn find(&self, client: ClientKey) -> Result<usize, usize> {
        self.as_slice().binary_search_by_key(&client, |s| s.client)
    }

    fn insert(&mut self, i: usize, sub: Sub) {
        match self {
            Subs::Many(v) if v.is_empty() => *self = Subs::One(sub),
            Subs::Many(v) => v.insert(i, sub),
            Subs::One(first) => {
                let mut v = vec![*first];
                v.insert(i, sub);
                *self = Subs::Many(v);
            }
        }
    }

    fn remove(&mut self, i: usize) {
        match self {
            Subs::One(_) => *self = Subs::none(),
            Subs::Many(v) => {
                v.remove(i);
                if let [last] = v[..] {
                    *self = Subs::One(last);
                }
            }
        }
    }
}

/// One client's filters: most clients have one, kept without a vector.
#[derive(Default)]
enum Filters {
    #[default]
    None,
    One(Box<str>),
    Many(Vec<Box<str>>),
}

impl Filters {
    fn is_empty(&self) -> bool {
        matches!(self, Filters::None)
    }

    fn push(&mut self, filter: Box<str>) {
        *self = match std::mem::take(self) {
            Filters::None => Filters::One(filter),
            Filters::One(first) => Filters::Many(vec![first, filter]),
            Filters::Many(mut v) => {
                v.push(filter);
                Filters::Many(v)
            }
        };
    }

    /// Removes `filter`; false if it was not there.
    fn remove(&mut self, filter: &str) -> bool {
        match self {
            Filters::None => false,
            Filters::One(f) if **f == *filter => {
                *self = Filters::None;
                true
            }
            Filters::One(_) => false,
            Filters::Many(v) => {
                let Some(pos) = v.iter().position(|f| **f == *filter) else {
                    return false;
                };
                v.swap_remove(pos);
                match v.len() {
                    0 => *self = Filters::None,
                    1 => *self = Filters::One(v.pop().expect("one filter left")),
                    _ => {}
                }
                true
            }
        }
    }

    fn iter(&self) -> std::slice::Iter<'_, Box<str>> {
        match self {
            Filters::None => [].iter(),
            Filters::One(f) => std::slice::from_ref(f).iter(),
            Filters::Many(v) => v.iter(),
        }
    }

    fn into_vec(self) -> Vec<Box<str>> {
        match self {
            Filters::None => Vec::new(),
            Filters::One(f) => vec![f],
            Filters::Many(v) => v,
        }
    }
}

/// Keeps one entry per client, the one with the highest QoS.
fn dedup_max_qos(out: &mut Vec<(ClientKey, QoS)>) {
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    out.dedup_by_key(|e| e.0);
}

#[cfg(test)]
mod tests;
