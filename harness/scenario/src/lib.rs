//! Scenario YAML: parsing, validation with file:line:column errors, and expectation matching.
