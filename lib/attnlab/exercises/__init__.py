"""Checks for the chapters' exercises: ``attnlab.exercises.chNN`` holds chapter NN's.

Each check takes the learner's answer and returns a one-line verdict string; a wrong answer raises
``AssertionError`` with a hint naming the slip, and ``None`` (not attempted yet) returns a reminder. A check
runs a function answer under :class:`~attnlab.exercises._common.Guard`, so an answer that calls what its
exercise forbids fails, naming the shortcut. A "predict, then run" question (``check_prediction_*``) runs its
experiment only once a guess is written, and answers ✓ or ✗ with an explanation built from the numbers.
"""
