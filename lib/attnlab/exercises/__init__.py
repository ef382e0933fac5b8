"""Checks for the chapters' exercises: ``attnlab.exercises.chNN`` holds chapter NN's.

Each check takes the learner's answer and returns a one-line verdict string; a wrong answer raises
``AssertionError`` with a hint, and ``None`` (not attempted yet) returns a reminder.
"""
