"""punmri.pruning"""
