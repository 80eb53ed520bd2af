"""Writes the benchmark CSV: N rows x 10 columns (integers, decimals, strings with quoted
commas and quotes, booleans, dates, datetimes), about 150 MB at 1,000,000 rows."""
import random
import sys

rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
path = sys.argv[1]
rnd = random.Random(42)
categories = ["Toys", "Electronics", "Kitchen", "Garden", "Books", "Sports"]
words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
with open(path, "w", newline="") as f:
    f.write("id,sku,name,category,price,quantity,in_stock,released,updated_at,description\n")
    for i in range(rows):
        name = f"{rnd.choice(words).title()} {rnd.choice(words)} {i}"
        if i % 7 == 0:
            name = f'"{name}, deluxe"'
        description = f'"Says ""{rnd.choice(words)}"", then {rnd.choice(words)}, {rnd.choice(words)}"' if i % 3 == 0 else f"plain {rnd.choice(words)} text"
        f.write(
            f"{i},SKU-{i:07d},{name},{rnd.choice(categories)},{rnd.randint(100, 100000) / 100:.2f},{rnd.randint(0, 500)},"
            f"{'true' if rnd.random() < 0.6 else 'false'},{2015 + rnd.randint(0, 9)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d},"
            f"2024-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}T{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}Z,"
            f"{description}\n")
