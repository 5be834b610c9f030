"""The scenario ``notify-worker demo`` runs: every workflow through a real worker."""
