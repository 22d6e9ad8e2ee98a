//! The regulator's dossier of a case, assembled from the store.
