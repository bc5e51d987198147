//! Reads a kernel console log and finds the crashes in it, titled and attributed to a module.
