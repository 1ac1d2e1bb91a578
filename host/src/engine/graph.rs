//! Validation of the dependency graph formed by manifold names and inputs.

use std::collections::{HashMap, HashSet};

use super::EngineError;

/// One component of the graph: its name and its inputs.
pub(crate) type Node<'a> = (&'a str, &'a [String]);

/// Checks that names are non-empty and unique, that every input names a component (once)
/// and that the inputs form no cycle.
pub(crate) fn validate(nodes: &[Node<'_>]) -> Result<(), EngineError> {
    let mut names = HashSet::new();
    for &(name, _) in nodes {
        if name.is_empty() {
            return Err(EngineError::EmptyName);
        }
        if !names.insert(name) {
            return Err(EngineError::DuplicateName(name.to_owned()));
        }
    }
    for &(name, inputs) in nodes {
        check_inputs(name, inputs, &names)?;
    }
    match find_cycle(nodes) {
        Some(cycle) => Err(EngineError::Cycle(cycle)),
        None => Ok(()),
    }
}

fn check_inputs(name: &str, inputs: &[String], names: &HashSet<&str>) -> Result<(), EngineError> {
    let mut seen = HashSet::new();
    for input in inputs {
        let error = |input: &String| (name.to_owned(), input.clone());
        if !names.contains(input.as_str()) {
            let (component, input) = error(input);
            return Err(EngineError::UnknownInput { component, input });
        }
        if !seen.insert(input) {
            let (component, input) = error(input);
            return Err(EngineError::DuplicateInput { component, input });
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Mark {
    Unvisited,
    OnPath,
    Done,
}

/// Depth-first search along inputs. Returns the first cycle found as the names along it,
/// the first name repeated at the end (`a -> b -> a`: `a` depends on `b`, which depends on
/// `a`). Assumes every input names a node.
fn find_cycle(nodes: &[Node<'_>]) -> Option<Vec<String>> {
    let mut search = Search {
        nodes,
        index: nodes
            .iter()
            .enumerate()
            .map(|(i, &(name, _))| (name, i))
            .collect(),
        marks: vec![Mark::Unvisited; nodes.len()],
        path: Vec::new(),
    };
    (0..nodes.len()).find_map(|node| search.visit(node))
}

struct Search<'a> {
    nodes: &'a [Node<'a>],
    index: HashMap<&'a str, usize>,
    marks: Vec<Mark>,
    path: Vec<usize>,
}

impl Search<'_> {
    fn visit(&mut self, node: usize) -> Option<Vec<String>> {
        match self.marks[node] {
            Mark::Done => return None,
            Mark::OnPath => return Some(self.cycle_to(node)),
            Mark::Unvisited => {}
        }
        self.marks[node] = Mark::OnPath;
        self.path.push(node);
        for input in self.nodes[node].1 {
            let next = *self.index.get(input.as_str()).expect("inputs were checked");
            if let Some(cycle) = self.visit(next) {
                return Some(cycle);
            }
        }
        self.path.pop();
        self.marks[node] = Mark::Done;
        None
    }

    /// The part of the current path from `node` on, closed by `node` again.
    fn cycle_to(&self, node: usize) -> Vec<String> {
        let start = self
            .path
            .iter()
            .position(|&n| n == node)
            .expect("node is on the path");
        self.path[start..]
            .iter()
            .chain([&node])
            .map(|&n| self.nodes[n].0.to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn check(spec: &[(&str, &[&str])]) -> Result<(), EngineError> {
        let owned: Vec<(&str, Vec<String>)> = spec
            .iter()
            .map(|&(name, inputs)| (name, inputs.iter().map(|&i| i.to_owned()).collect()))
            .collect();
        let nodes: Vec<Node<'_>> = owned.iter().map(|(n, i)| (*n, i.as_slice())).collect();
        validate(&nodes)
    }

    #[test]
    fn accepts_a_dag_in_any_order() {
        check(&[("d", &["b", "c"]), ("b", &["a"]), ("c", &["a"]), ("a", &[])]).unwrap();
        check(&[]).unwrap();
    }

    #[test]
    fn rejects_empty_and_duplicate_names() {
        assert_eq!(check(&[("", &[])]), Err(EngineError::EmptyName));
        let err = check(&[("a", &[]), ("b", &[]), ("a", &[])]).unwrap_err();
        assert_eq!(err, EngineError::DuplicateName("a".into()));
        assert_eq!(err.to_string(), "duplicate component name `a`");
    }

    #[test]
    fn rejects_unknown_and_repeated_inputs() {
        let err = check(&[("a", &[]), ("b", &["a", "nope"])]).unwrap_err();
        assert_eq!(err.to_string(), "component `b` has unknown input `nope`");
        let err = check(&[("a", &[]), ("b", &["a", "a"])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "component `b` lists input `a` more than once"
        );
    }

    #[test]
    fn rejects_a_cycle_and_names_it() {
        let err = check(&[("x", &[]), ("a", &["b"]), ("b", &["c"]), ("c", &["a", "x"])]);
        let err = err.unwrap_err();
        assert_eq!(
            err,
            EngineError::Cycle(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        assert_eq!(err.to_string(), "dependency cycle: a -> b -> c -> a");
        // A cycle reached from outside names only the cycle.
        let err = check(&[("top", &["a"]), ("a", &["b"]), ("b", &["a"])]).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: a -> b -> a");
    }

    #[test]
    fn rejects_a_self_dependency() {
        let err = check(&[("a", &["a"])]).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: a -> a");
    }
}
