-- A partner's signed receipt covers a whole batch: keep it once, and point each
-- dissemination at it (0002 stored a copy in every row; that column is left unused).
CREATE TABLE receipts (
    receipt_id  INTEGER PRIMARY KEY,
    party       TEXT NOT NULL,
    body        TEXT NOT NULL,
    received    TEXT NOT NULL
);
ALTER TABLE disseminations ADD COLUMN receipt_id INTEGER REFERENCES receipts(receipt_id);
