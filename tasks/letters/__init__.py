"""Transient letters (docs/letters.md): move uploaded letter PDFs into the letters-PDF bucket,
exactly once.

* ``moves.move_letter`` — the core of ``notify.letters.move_transient``;
* ``sweep.sweep_transient_letters`` — the core of ``notify.letters.sweep_transient``;
* ``backfill.iter_letter_jobs`` / ``backfill.run_letter_job`` — ``notify-worker backfill letters``;
* ``settings.LetterSettings`` — bucket names, multipart copy threshold, alert age.

See docs/letters.md.
"""
