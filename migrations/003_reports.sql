-- One report per attempt: a repeat of the applied report is answered 200, a different one
-- 409 `conflicting_report`. The report's output and error are the task's own columns; its
-- cost is kept here, because `actualCost` is the total charged over all attempts.
ALTER TABLE Task ADD COLUMN reportedCost REAL;
