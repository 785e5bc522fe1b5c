//! Shared tensor math used by several methods (written once).
