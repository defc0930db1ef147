"""The deploy layer: the hook's decision, roll-outs, rollback, scaling, retirement, health and formation."""
