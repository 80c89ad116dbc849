"""For developers and demos, never on a service host: the local stack, host boards, the
simulated fleet, the demo and its live view.
"""
