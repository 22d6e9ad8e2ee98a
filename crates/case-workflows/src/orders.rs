//! What workers and the carrier do with a case: grade the risk, finish a
//! provisioning order, re-score on new signals, tell a subscriber about a suspension.
