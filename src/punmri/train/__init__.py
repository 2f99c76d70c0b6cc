"""punmri.train"""
