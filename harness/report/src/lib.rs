//! report.json, junit.xml and the terminal summary of a modharness run, written atomically.
